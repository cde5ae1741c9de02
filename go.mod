module wapper.dev/wapper

go 1.26.0

require wapper.dev/wapper/sdk-go v0.0.0

require wapper.dev/wapper/abi v0.0.0 // indirect

replace (
	wapper.dev/wapper/abi => ./abi
	wapper.dev/wapper/sdk-go => ./sdk-go
)
