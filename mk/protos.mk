# Protocol code generation. Generated Go is committed; `make protos` refreshes it.
PROTO_DIR := protocols/protos
PROTO_GO_OUT := protocols

.PHONY: protos
protos: | deps
	$(GO) build -o $(BIN)/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(GO) build -o $(BIN)/protoc-gen-go-ttrpc github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc
	protoc -I $(PROTO_DIR) -I /usr/include \
		--plugin=protoc-gen-go=$(BIN)/protoc-gen-go \
		--plugin=protoc-gen-go-ttrpc=$(BIN)/protoc-gen-go-ttrpc \
		--go_out=$(PROTO_GO_OUT) --go_opt=module=github.com/sandbox-guest/sandbox-guest/protocols \
		--go-ttrpc_out=$(PROTO_GO_OUT) --go-ttrpc_opt=module=github.com/sandbox-guest/sandbox-guest/protocols \
		$(PROTO_DIR)/*.proto
