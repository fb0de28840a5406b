# Fuzz targets of the storage/device concern (hostile host input parsers).
FUZZTIME ?= 30s

.PHONY: fuzz-storage
fuzz-storage:
	$(GO) test ./agent/uevent -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./agent/device -run '^$$' -fuzz '^FuzzParsePCIPath$$' -fuzztime $(FUZZTIME)
	$(GO) test ./agent/storage -run '^$$' -fuzz '^FuzzParseOptions$$' -fuzztime $(FUZZTIME)
	$(GO) test ./agent/storage -run '^$$' -fuzz '^FuzzCopyPath$$' -fuzztime $(FUZZTIME)
