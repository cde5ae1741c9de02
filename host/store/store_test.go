package store

import (
	"testing"
	"time"
)

// TestReportedValues: reported values saved in batches come back with the
// desired ones, survive a reopen (the latest save wins), and go
// with DeleteTwins.
func TestReportedValues(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 123456789)
	if _, err := s.SetDesired("default/a", "sp", "21.5", "test", false, now); err != nil {
		t.Fatal(err)
	}
	batch := []Reported{
		{Device: "default/b", Property: "x", Value: "1", Time: now},
		{Device: "default/a", Property: "sp", Value: "20", Time: now},
		{Device: "default/a", Property: "t", Value: "héllo", Time: now.Add(time.Second)},
	}
	if err := s.SaveReported(batch); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveReported([]Reported{{Device: "default/a", Property: "sp", Value: "21.5", Time: now.Add(2 * time.Second)}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tw, err := s.Twins("default/a")
	if err != nil {
		t.Fatal(err)
	}
	sp, tt := tw["sp"], tw["t"]
	if sp.Desired != "21.5" || sp.DesiredSeq == 0 || sp.Reported != "21.5" || !sp.ReportedTime.Equal(now.Add(2*time.Second)) {
		t.Fatalf("sp twin %+v", sp)
	}
	if tt.Reported != "héllo" || !tt.ReportedTime.Equal(now.Add(time.Second)) || len(tw) != 2 {
		t.Fatalf("twins %+v", tw)
	}
	if err := s.DeleteTwins("default/a"); err != nil {
		t.Fatal(err)
	}
	if tw, _ := s.Twins("default/a"); len(tw) != 0 {
		t.Fatalf("twins after delete: %+v", tw)
	}
	if tw, _ := s.Twins("default/b"); tw["x"].Reported != "1" {
		t.Fatalf("another device's twins: %+v", tw)
	}
}
