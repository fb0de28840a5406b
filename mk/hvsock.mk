# vhost-user-vsock backend (host side).
.PHONY: hvsock test-hvsock
build: hvsock
test: test-hvsock

hvsock:
	$(GO) build -o $(BIN)/hvsock ./host/cmd/hvsock

test-hvsock:
	$(GO) test -race -count=1 ./host/hvsock/... ./host/cmd/hvsock/...
