module tcp-instrument-go

go 1.26

require (
	wapper.dev/wapper/abi v0.0.0
	wapper.dev/wapper/sdk-go v0.0.0
)

// No proxy serves wapper.dev/wapper/..., so the SDK is a local module:
// the wapper checkout this project was generated beside.
replace (
	wapper.dev/wapper/abi => ../../abi
	wapper.dev/wapper/sdk-go => ../../sdk-go
)
