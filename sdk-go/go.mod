module wapper.dev/wapper/sdk-go

go 1.26

require wapper.dev/wapper/abi v0.0.0

replace wapper.dev/wapper/abi => ../abi
