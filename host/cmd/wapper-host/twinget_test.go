package main

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestMQTTTwinGet: --mqtt-twin-get defaults to answering, except beside
// edgecore (--dmi) on an external broker, and can be set either way.
func TestMQTTTwinGet(t *testing.T) {
	cases := []struct {
		args []string
		want bool
	}{
		{nil, true},
		{[]string{"--dmi"}, true},
		{[]string{"--mqtt-broker", "tcp://127.0.0.1:1883"}, true},
		{[]string{"--dmi", "--mqtt-broker", "tcp://127.0.0.1:1883"}, false},
		{[]string{"--dmi", "--mqtt-broker", "tcp://127.0.0.1:1883", "--mqtt-twin-get"}, true},
		{[]string{"--dmi", "--mqtt-broker", "tcp://127.0.0.1:1883", "--mqtt-twin-get=true"}, true},
		{[]string{"--dmi", "--mqtt-broker", "tcp://127.0.0.1:1883", "--mqtt-twin-get=auto"}, false},
		{[]string{"--mqtt-twin-get=false"}, false},
	}
	for _, c := range cases {
		cmd := command()
		if err := cmd.ParseFlags(c.args); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		f := cmd.Flags()
		dmi, _ := f.GetBool("dmi")
		broker, _ := f.GetString("mqtt-broker")
		v := f.Lookup("mqtt-twin-get").Value.(*twinGetOption)
		if got := v.answers(dmi, broker); got != c.want {
			t.Errorf("%v: answers twin/get %v, want %v", c.args, got, c.want)
		}
	}
	f := pflag.NewFlagSet("t", pflag.ContinueOnError)
	addDMIFlags(f, &dmiOptions{})
	if err := f.Parse([]string{"--mqtt-twin-get=maybe"}); err == nil || !strings.Contains(err.Error(), "auto, true or false") {
		t.Errorf("--mqtt-twin-get=maybe: %v", err)
	}
}
