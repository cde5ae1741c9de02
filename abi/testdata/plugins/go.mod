module wapper.dev/wapper/abi/testdata/plugins

go 1.26

require (
	wapper.dev/wapper/abi v0.0.0
	wapper.dev/wapper/sdk-go v0.0.0
)

replace (
	wapper.dev/wapper/abi => ../..
	wapper.dev/wapper/sdk-go => ../../../sdk-go
)
