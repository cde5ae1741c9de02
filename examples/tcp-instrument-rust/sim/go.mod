module tcp-instrument-sim

go 1.26
