module wapper.dev/wapper/abi

go 1.26
