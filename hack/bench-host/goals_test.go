package main

import "testing"

func TestGoals(t *testing.T) {
	nat := Result{Devices: goalDevices, Mode: modeNative, CPUPercent: 20, RSSMiB: 100, ReadingsPerSec: 20000, WantPerSec: 20000}
	host := func(cpu, rss, skipped float64) Result {
		return Result{Devices: goalDevices, Mode: modeStandalone, CPUPercent: cpu, RSSMiB: rss, ReadingsPerSec: 20000, WantPerSec: 20000, Skipped: skipped}
	}
	big := func(skipped float64, err string) Result {
		return Result{Devices: goalLarge, Mode: modeStandalone, ReadingsPerSec: 100000, WantPerSec: 100000, Skipped: skipped, Error: err}
	}
	verdicts := func(rs ...Result) [3]string {
		gs := goals(rs)
		if len(gs) != 3 {
			t.Fatalf("%d goals, want 3: %+v", len(gs), gs)
		}
		return [3]string{gs[0].Verdict, gs[1].Verdict, gs[2].Verdict}
	}
	for _, c := range []struct {
		name string
		rs   []Result
		want [3]string
	}{
		{"within 2x", []Result{host(40, 200, 0), nat, big(0, "")}, [3]string{"PASS", "PASS", "PASS"}},
		{"RSS over 2x", []Result{host(40, 201, 0), nat, big(0, "")}, [3]string{"FAIL", "PASS", "PASS"}},
		{"CPU per reading over 2x", []Result{host(41, 200, 0), nat, big(0, "")}, [3]string{"PASS", "FAIL", "PASS"}},
		{"reads skipped", []Result{host(10, 100, 1), nat, big(3, "")}, [3]string{"FAIL", "FAIL", "FAIL"}},
		{"50,000 failed", []Result{host(10, 100, 0), nat, big(0, "start")}, [3]string{"PASS", "PASS", "FAIL"}},
		{"not run", []Result{nat}, [3]string{"NOT RUN", "NOT RUN", "NOT RUN"}},
		{"host failed", []Result{{Devices: goalDevices, Mode: modeStandalone, Error: "exited"}, nat}, [3]string{"FAIL", "FAIL", "NOT RUN"}},
	} {
		if got := verdicts(c.rs...); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
