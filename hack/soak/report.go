package main

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// occurrence is one "desired value applied" log record.
type occurrence struct {
	run int
	rec logRecord
}

func valueText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// report analyses the logs and prints the summary; it returns the exit code.
func (s *soaker) report(w *writer, fin finalResult, h healthResult) int {
	var problems []string
	if err := w.dump(filepath.Join(filepath.Dir(s.cfg.logDir), "writes.tsv")); err != nil {
		problems = append(problems, "write writes.tsv: "+err.Error())
	}
	logs := map[int]*runLog{}
	for _, r := range s.runs {
		l, err := parseLog(r.logPath)
		if err != nil {
			problems = append(problems, fmt.Sprintf("read log of run %d: %v", r.n, err))
			continue
		}
		logs[r.n] = l
	}

	// Writes.
	byValue := map[string]*write{}
	bySeq := map[uint64]*write{}
	outcomes := map[string]int{}
	codes := map[string]int{}
	refusedWhy := map[string]int{}
	var badAnswers []string
	for _, wr := range w.writes {
		outcomes[wr.outcome]++
		byValue[strconv.FormatInt(wr.value, 10)] = wr
		if wr.outcome == accepted || wr.outcome == refused {
			codes[fmt.Sprintf("%s %d", wr.outcome, wr.code)]++
		}
		if wr.outcome == refused {
			refusedWhy[shorten(wr.err, 90)]++
		}
		if wr.outcome == accepted && wr.seq != 0 {
			if prev := bySeq[wr.seq]; prev != nil {
				problems = append(problems, fmt.Sprintf("desired seq %d given to two writes: %s=%d and %s=%d", wr.seq, prev.dev.key(), prev.value, wr.dev.key(), wr.value))
			}
			bySeq[wr.seq] = wr
		}
		if wr.outcome == accepted && wr.err != "" && strings.HasPrefix(wr.err, "2xx answer") {
			badAnswers = append(badAnswers, wr.dev.key()+": "+wr.err)
		}
	}

	// Applied seqs, from the logs, in run order.
	occ := map[uint64][]occurrence{}
	lastSeq := map[string]uint64{}
	var mismatched, outOfOrder []string
	appliedTotal := 0
	for _, r := range s.runs {
		l := logs[r.n]
		if l == nil {
			continue
		}
		for _, rec := range l.applied {
			appliedTotal++
			occ[rec.Seq] = append(occ[rec.Seq], occurrence{run: r.n, rec: rec})
			val := valueText(rec.Value)
			if !strings.HasPrefix(rec.Device, "default/v") {
				continue // not a soak write (faulty devices have none)
			}
			wr := byValue[val]
			switch {
			case wr == nil:
				mismatched = append(mismatched, fmt.Sprintf("run %d applied %s=%s (seq %d): a value the soak never wrote", r.n, rec.Device, val, rec.Seq))
			case wr.dev.key() != rec.Device:
				mismatched = append(mismatched, fmt.Sprintf("run %d applied %s=%s (seq %d), but the soak wrote %s to %s", r.n, rec.Device, val, rec.Seq, val, wr.dev.key()))
			case wr.seq != 0 && wr.seq != rec.Seq:
				mismatched = append(mismatched, fmt.Sprintf("run %d applied %s=%s as seq %d, but the host answered seq %d for it", r.n, rec.Device, val, rec.Seq, wr.seq))
			case wr.outcome != accepted && wr.outcome != uncertain:
				mismatched = append(mismatched, fmt.Sprintf("run %d applied %s=%s (seq %d), a write answered %s %d", r.n, rec.Device, val, rec.Seq, wr.outcome, wr.code))
			}
			k := rec.Device + "/" + rec.Property
			if rec.Seq < lastSeq[k] {
				outOfOrder = append(outOfOrder, fmt.Sprintf("run %d applied %s seq %d (%s) after seq %d", r.n, k, rec.Seq, val, lastSeq[k]))
			}
			lastSeq[k] = max(lastSeq[k], rec.Seq)
		}
	}
	var doubledIn, doubledAcross []string
	seqs := make([]uint64, 0, len(occ))
	for seq := range occ {
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, seq := range seqs {
		o := occ[seq]
		if len(o) < 2 {
			continue
		}
		var where []string
		runs := map[int]int{}
		for _, x := range o {
			runs[x.run]++
			where = append(where, fmt.Sprintf("run %d", x.run))
		}
		line := fmt.Sprintf("seq %d (%s=%s) applied %d times: %s", seq, o[0].rec.Device, valueText(o[0].rec.Value), len(o), strings.Join(where, ", "))
		within := false
		for _, n := range runs {
			within = within || n > 1
		}
		if within {
			doubledIn = append(doubledIn, line)
		} else {
			doubledAcross = append(doubledAcross, line)
		}
	}

	// The documented kill window: found in the state, confirmed by a later
	// run's log.
	var windowConfirmed, windowUnseen []string
	for _, ww := range s.window {
		seen := false
		for _, x := range occ[ww.seq] {
			seen = seen || x.run > ww.afterRun
		}
		line := fmt.Sprintf("%s=%s (seq %d) written by run %d before its kill, not yet journaled", ww.device, ww.value, ww.seq, ww.afterRun)
		if seen {
			windowConfirmed = append(windowConfirmed, line+"; written again by a later run")
		} else {
			windowUnseen = append(windowUnseen, line+"; no later run logged it (superseded before it was re-applied)")
		}
	}

	// Accepted writes that were never applied, because a newer value of
	// the same device came first (the twin keeps the latest desired only).
	superseded, noSeq := 0, 0
	for _, wr := range w.writes {
		if wr.outcome != accepted {
			continue
		}
		if wr.seq == 0 {
			noSeq++
		} else if len(occ[wr.seq]) == 0 {
			superseded++
		}
	}

	// Host runs.
	var nonJSON []string
	partial := 0
	levels := map[string]int{}
	messages := map[string]int{}
	for _, r := range s.runs {
		l := logs[r.n]
		if l == nil {
			continue
		}
		for _, line := range l.nonJSON {
			nonJSON = append(nonJSON, fmt.Sprintf("run %d: %s", r.n, shorten(line, 200)))
		}
		if l.partial {
			partial++
		}
		for k, v := range l.levels {
			levels[k] += v
		}
		for k, v := range l.messages {
			messages[k] += v
		}
	}
	kills, neverUp := 0, 0
	for _, r := range s.runs {
		if r.killed {
			kills++
			if _, ok := r.upAfter(); !ok {
				neverUp++
			}
		}
	}

	// Print.
	fmt.Println()
	fmt.Println("==================== soak summary ====================")
	fmt.Printf("duration          %v of writes and kills, then the final run (%v in all)\n", s.o.duration, time.Since(s.began).Round(time.Second))
	fmt.Printf("devices           %d: %d virtual (100–500 ms cycles, written), %d faulty %s\n", len(s.devs), len(s.virtual), len(s.faulty), fmtCounts(faultyKinds(s.faulty)))
	fmt.Printf("host runs         %d: %d ended by kill -9 at random points (%d of them before REST answered), %d restarts, %d exited by themselves, %d did not answer within 90s\n",
		len(s.runs), kills, neverUp, len(s.runs)-1, len(s.unexpected), s.startFails)
	fmt.Printf("final run         %s\n", s.finalStop)
	fmt.Printf("writes            %d sent: %d accepted (%s), %d refused, %d not sent (host down), %d uncertain (in flight at a kill)\n",
		len(w.writes), outcomes[accepted], codeList(codes, accepted), outcomes[refused], outcomes[notSent], outcomes[uncertain])
	if len(refusedWhy) > 0 {
		fmt.Printf("  refused         %s\n", topList(refusedWhy, 4))
	}
	fmt.Printf("applied (logs)    %d records, %d distinct seqs; %d accepted writes never logged as applied (superseded by a newer value, or journaled just before a kill)", appliedTotal, len(occ), superseded)
	if noSeq > 0 {
		fmt.Printf(", %d accepted with no seq known", noSeq)
	}
	fmt.Println()
	fmt.Printf("LOST              %d of %d devices written (accepted or uncertain writes)", len(fin.lost), fin.checked)
	if fin.converged {
		fmt.Printf(" (all applied %v after the final start was answering; ended on: %s)", fin.took.Round(100*time.Millisecond), fmtCounts(fin.endedOn))
	} else {
		fmt.Printf(" (not converged within %v)", s.o.finalWait)
	}
	fmt.Println()
	printList("  ", fin.lost, 15)
	doubled := len(doubledIn) + len(doubledAcross)
	if s.o.strict {
		doubled += len(windowConfirmed)
	}
	fmt.Printf("DOUBLED           %d (within one run %d, across runs %d)\n", doubled, len(doubledIn), len(doubledAcross))
	printList("  ", doubledIn, 10)
	printList("  ", doubledAcross, 10)
	note := "not counted as doubled: the log cannot show them (see hack/soak/state.go)"
	if s.o.strict {
		note = "counted as doubled (-strict)"
	}
	fmt.Printf("repeated by the documented kill window: %d confirmed (+%d found but superseded), %s\n", len(windowConfirmed), len(windowUnseen), note)
	printList("  ", windowConfirmed, 10)
	fmt.Printf("mismatched values %d, applied out of order %d, malformed 2xx answers %d\n", len(mismatched), len(outOfOrder), len(badAnswers))
	printList("  ", mismatched, 10)
	printList("  ", outOfOrder, 10)
	printList("  ", badAnswers, 5)
	if h.err != "" {
		fmt.Printf("healthy reading   could not check: %s\n", h.err)
	} else {
		fmt.Printf("healthy reading   %d/%d virtual devices read within %v at the end (longest wait for a reading %v, %s); fault-free devices on the faulty plugin: %d/%d\n",
			h.virtualOK, h.virtualAll, h.window, h.worstGap.Round(100*time.Millisecond), h.worstDev, h.faultFreeOK, h.faultFreeAll)
		fmt.Printf("  reads skipped   (pool busy a whole cycle) %s\n", h.skipped)
		fmt.Printf("  faulty phases   %s\n", fmtCounts(h.faultyPhases))
		printList("  ", h.stopped, 10)
	}
	fmt.Printf("host log          %s; %d runs ended mid-line (the kill); %d non-JSON lines\n", fmtCounts(levels), partial, len(nonJSON))
	if len(messages) > 0 {
		fmt.Printf("  warn/error      %s\n", topList(messages, 8))
	}
	printList("  ", nonJSON, 10)
	printList("  state: ", s.inspectErr, 5)
	printList("  ", problems, 10)
	s.printRSS()

	failed := len(fin.lost) > 0 || !fin.converged || doubled > 0 || len(mismatched) > 0 || len(outOfOrder) > 0 ||
		len(s.unexpected) > 0 || h.err != "" || h.virtualOK < h.virtualAll || len(problems) > 0 || outcomes[accepted] == 0
	if outcomes[accepted] == 0 {
		fmt.Println("no desired write was accepted: the soak tested nothing (too short, or the host never got its devices up)")
	}
	fmt.Println("======================================================")
	if failed {
		fmt.Println("soak: FAIL")
		return 1
	}
	fmt.Println("soak: PASS")
	return 0
}

func (s *soaker) printRSS() {
	s.rssMu.Lock()
	samples := append([]rssSample(nil), s.rss...)
	s.rssMu.Unlock()
	if len(samples) == 0 {
		fmt.Println("RSS               no samples")
		return
	}
	lo, hi := samples[0], samples[0]
	for _, x := range samples {
		if x.kib < lo.kib {
			lo = x
		}
		if x.kib > hi.kib {
			hi = x
		}
	}
	last := samples[len(samples)-1]
	fmt.Printf("RSS (VmRSS)       %d samples (1/s): min %s, max %s (run %d at %v), last %s (final run)\n",
		len(samples), mib(lo.kib), mib(hi.kib), hi.run, hi.at.Round(time.Second), mib(last.kib))
	var peaks []string
	for _, r := range s.runs {
		r.mu.Lock()
		if r.rssPeak > 0 {
			peaks = append(peaks, fmt.Sprintf("%d:%.0f", r.n, float64(r.rssPeak)/1024))
		}
		r.mu.Unlock()
	}
	fmt.Printf("  peak per run    (run:MiB) %s\n", strings.Join(peaks, " "))
	var cpu, wall time.Duration
	for _, r := range s.runs {
		r.mu.Lock()
		cpu += r.cpu
		r.mu.Unlock()
		if !r.end.IsZero() {
			wall += r.end.Sub(r.start)
		}
	}
	if wall > 0 {
		fmt.Printf("CPU               host used %v of CPU in %v of runs (%.0f%% of one core on average, sampled each second)\n",
			cpu.Round(100*time.Millisecond), wall.Round(time.Second), 100*cpu.Seconds()/wall.Seconds())
	}
	rows := 12
	fmt.Println("  time     run   VmRSS")
	step := max(len(samples)/rows, 1)
	for i := 0; i < len(samples); i += step {
		x := samples[i]
		if i+step >= len(samples) {
			x = last
		}
		fmt.Printf("  %-8v %-5d %s\n", x.at.Round(time.Second), x.run, mib(x.kib))
	}
}

func faultyKinds(devs []*device) map[string]int {
	m := map[string]int{}
	for _, d := range devs {
		m[d.fault]++
	}
	return m
}

func codeList(codes map[string]int, outcome string) string {
	var parts []string
	for k, v := range codes {
		if c, ok := strings.CutPrefix(k, outcome+" "); ok {
			parts = append(parts, fmt.Sprintf("%s: %d", c, v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func topList(m map[string]int, n int) string {
	type kv struct {
		k string
		v int
	}
	var all []kv
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || all[i].v == all[j].v && all[i].k < all[j].k })
	var parts []string
	for i, x := range all {
		if i == n {
			parts = append(parts, fmt.Sprintf("… %d more kinds", len(all)-n))
			break
		}
		parts = append(parts, fmt.Sprintf("%q ×%d", x.k, x.v))
	}
	return strings.Join(parts, "; ")
}

func printList(prefix string, lines []string, n int) {
	for i, l := range lines {
		if i == n {
			fmt.Printf("%s… and %d more\n", prefix, len(lines)-n)
			return
		}
		fmt.Printf("%s%s\n", prefix, l)
	}
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
