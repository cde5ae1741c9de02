package main

import (
	"testing"
	"time"

	"wapper.dev/wapper/host/devices"
)

// TestKubeEdgeTwin: twins sent to wapper-cloud carry KubeEdge's metadata,
// as cloudcore writes DeviceStatus: the type in edgecore's spelling and
// both timestamps in milliseconds.
func TestKubeEdgeTwin(t *testing.T) {
	at := time.UnixMilli(1767323045000)
	tw := kubeedgeTwin(devices.TwinStatus{Property: "temp", Type: "DOUBLE", Reported: "21.5", ReportedTime: at, Desired: "22", DesiredTime: at.Add(time.Second)})
	if tw.Reported.Value != "21.5" || tw.Reported.Metadata["type"] != "float" || tw.Reported.Metadata["timestamp"] != "1767323045000" {
		t.Errorf("reported %+v", tw.Reported)
	}
	if tw.ObservedDesired.Value != "22" || tw.ObservedDesired.Metadata["type"] != "float" || tw.ObservedDesired.Metadata["timestamp"] != "1767323046000" {
		t.Errorf("observedDesired %+v", tw.ObservedDesired)
	}
	if tw := kubeedgeTwin(devices.TwinStatus{Property: "n", Type: "INT", Reported: "3"}); tw.Reported.Metadata["type"] != "int" || tw.ObservedDesired.Metadata != nil {
		t.Errorf("INT twin without desired: %+v", tw)
	}
}
