// Package benchresult is the results.json of hack/bench-host: what one
// benchmark run measured, written by hack/bench-host and read by
// hack/benchdoc to produce the tables of docs/performance.md.
package benchresult

import (
	"encoding/json"
	"fmt"
	"os"
)

// File is the name of the results file in a results folder.
const File = "results.json"

// Run modes.
const (
	ModeStandalone = "standalone"
	ModeDMI        = "dmi"
	ModeNative     = "native"
)

// Report is results.json: everything one run measured.
type Report struct {
	Date    string  `json:"date"`
	Machine Machine `json:"machine"`
	Window  string  `json:"window"`
	// Settle is how long each program ran after its start before the
	// window opened (empty in runs before it was recorded: 2s).
	Settle   string    `json:"settle,omitempty"`
	Seconds  float64   `json:"seconds"`
	Results  []Result  `json:"results"`
	Goals    []Goal    `json:"goals"`
	Profiles []Profile `json:"profiles,omitempty"`
}

// Machine describes where the run ran.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpuModel"`
	GoVersion string `json:"goVersion"`
	OS        string `json:"os"`
}

// String is the one-line form printed with the tables.
func (m Machine) String() string {
	return fmt.Sprintf("%d CPUs (%s), %s, %s", m.CPUs, m.CPUModel, m.OS, m.GoVersion)
}

// Result is one run at one device count.
type Result struct {
	Devices int    `json:"devices"`
	Mode    string `json:"mode"`
	// Error says why the run did not complete; the figures are then
	// those measured before it failed, or zero.
	Error string `json:"error,omitempty"`
	// CPUPercent is CPU time over the window (100 = one core).
	CPUPercent float64 `json:"cpuPercent"`
	// RSSMiB is the peak resident set over the window.
	RSSMiB float64 `json:"rssMiB"`
	// ReadingsPerSec is measured; WantPerSec is what the devices ask for.
	ReadingsPerSec float64 `json:"readingsPerSec"`
	WantPerSec     float64 `json:"wantPerSec"`
	// Skipped counts the reads skipped in the window (host only).
	Skipped float64 `json:"skipped"`
	// StartSeconds is the time until every device ran and had read.
	StartSeconds float64 `json:"startSeconds"`
	// FirstReadingMs is the time from one more Device created to its
	// first reading (host only; 0 when not measured).
	FirstReadingMs float64 `json:"firstReadingMs,omitempty"`
	// FirstReadingError says why the first reading was not timed; the
	// window's figures stand.
	FirstReadingError string `json:"firstReadingError,omitempty"`
}

// CPUPerReading is CPU µs per reading.
func (r Result) CPUPerReading() float64 {
	if r.ReadingsPerSec == 0 {
		return 0
	}
	return r.CPUPercent / 100 * 1e6 / r.ReadingsPerSec
}

// MarshalJSON adds the derived CPU µs per reading.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	return json.Marshal(struct {
		plain
		CPUMicrosPerReading float64 `json:"cpuMicrosPerReading"`
	}{plain(r), r.CPUPerReading()})
}

// Profile is a profile saved in the results folder with its pprof -top
// summary.
type Profile struct {
	Devices int    `json:"devices"`
	Kind    string `json:"kind"` // heap or cpu
	File    string `json:"file"`
	Top     string `json:"top"` // file of the summary
}

// Goal is one of issue 14's done-when checks.
type Goal struct {
	Name     string `json:"name"`
	Verdict  string `json:"verdict"` // PASS, FAIL or NOT RUN
	Measured string `json:"measured"`
}

// Read reads the report in file.
func Read(file string) (*Report, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &r, nil
}
