package runtime

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"

	"wapper.dev/wapper/abi"
)

// ReadReq names one property of one device.
type ReadReq struct{ Device, Handle uint32 }

// ReadMany reads many properties of many devices in as few guest calls as
// the plugin allows: one wapper_read_many call per chunk when the plugin
// exports it, else one wapper_read_batch per device. out is reused: it is
// resliced to len(reqs) entries in request order. The error is for the
// whole call (ctx done, no instance free in time, instance trapped);
// per-reading errors are in the entries.
//
// A chunk holds at most abi.MaxBatch requests. Its devices are locked in
// ascending handle order, before the pool slot is taken (the lock order of
// every device call: device locks, then a slot), so calls for one device
// stay serialised. A device that is removed, set aside, or unknown to the
// plugin gets its error in its entries without the guest being asked. When
// a wapper_read_many call kills its instance, the chunk is read again one
// device at a time, so that a device whose reads trap is found and set
// aside (SPEC.md §9) instead of failing its neighbours' readings with it;
// the whole call fails then only if that pass cannot run. On a whole-call
// error, every entry not read holds the error too.
func (p *Plugin) ReadMany(ctx context.Context, reqs []ReadReq, out []abi.BatchEntry) ([]abi.BatchEntry, error) {
	out = resizeEntries(out, len(reqs))
	if len(reqs) == 0 {
		return out, nil
	}
	if !p.info.Has(abi.ExportReadMany) {
		return out, p.readByDevice(ctx, reqs, out)
	}
	sc := scratchPool.Get().(*manyScratch)
	defer sc.release()
	// Each instance is asked only for the devices it holds (their home),
	// so that no device moves: a move is a wapper_device_add, far dearer
	// than the reads it would serve.
	sc.groupByHome(p, reqs, out)
	var err error
	for g := 0; g < len(sc.bounds)-1 && err == nil; g++ {
		order := sc.order[sc.bounds[g]:sc.bounds[g+1]]
		sc.greqs, sc.gout = sc.greqs[:0], resizeEntries(sc.gout, len(order))
		for _, k := range order {
			sc.greqs = append(sc.greqs, reqs[k])
		}
		err = p.readGroup(ctx, sc, sc.greqs, sc.gout)
		for i, k := range order {
			out[k] = sc.gout[i]
		}
	}
	if err != nil {
		fillErr(out, err)
	}
	return out, err
}

// readGroup reads requests whose devices share a home, one
// wapper_read_many call per chunk of abi.MaxBatch.
func (p *Plugin) readGroup(ctx context.Context, sc *manyScratch, reqs []ReadReq, out []abi.BatchEntry) error {
	for start := 0; start < len(reqs); start += abi.MaxBatch {
		end := min(start+abi.MaxBatch, len(reqs))
		err := p.readChunk(ctx, sc, reqs[start:end], out[start:end])
		var ce *callErr
		if errors.As(err, &ce) {
			err = p.readByDevice(ctx, reqs[start:end], out[start:end])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// groupByHome orders the indices of reqs by the home of their device (a
// counting sort over the few slots there are, keeping request order within
// a home) into sc.order, with group g at sc.order[sc.bounds[g]:sc.bounds[g+1]].
// Devices with no home yet form a group of their own; a request for an
// unknown device gets its error in out at once and joins no group.
func (sc *manyScratch) groupByHome(p *Plugin, reqs []ReadReq, out []abi.BatchEntry) {
	sc.homes, sc.gid = sc.homes[:0], sc.gid[:0]
	for k, r := range reqs {
		d := p.device(r.Device)
		if d == nil {
			out[k].Err = abi.Errorf(abi.ErrNotFound, "plugin %s has no device with handle %d", p.name, r.Device)
			sc.gid = append(sc.gid, -1)
			continue
		}
		h := d.home.Load()
		g := slices.Index(sc.homes, h)
		if g < 0 {
			g = len(sc.homes)
			sc.homes = append(sc.homes, h)
		}
		sc.gid = append(sc.gid, int32(g))
	}
	sc.bounds = append(sc.bounds[:0], make([]int, len(sc.homes)+1)...)
	for _, g := range sc.gid {
		if g >= 0 {
			sc.bounds[g+1]++
		}
	}
	for g := 1; g < len(sc.bounds); g++ {
		sc.bounds[g] += sc.bounds[g-1]
	}
	sc.order = append(sc.order[:0], make([]int32, sc.bounds[len(sc.homes)])...)
	next := append(sc.next[:0], sc.bounds[:len(sc.homes)]...)
	for k, g := range sc.gid {
		if g < 0 {
			continue
		}
		sc.order[next[g]] = int32(k)
		next[g]++
	}
	sc.next = next
}

// resizeEntries reslices out to n zeroed entries, reusing its array.
func resizeEntries(out []abi.BatchEntry, n int) []abi.BatchEntry {
	if cap(out) < n {
		return make([]abi.BatchEntry, n)
	}
	out = out[:n]
	clear(out)
	return out
}

// fillErr sets err in every entry that holds neither a value nor an error.
func fillErr(out []abi.BatchEntry, err error) {
	for i := range out {
		if !out[i].Value.IsValid() && out[i].Err == nil {
			out[i].Err = err
		}
	}
}

// wholeCall reports whether err from a device's call ends the whole
// ReadMany rather than that device's readings: the caller's context ended,
// or the plugin is closed.
func wholeCall(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, ErrClosed)
}

// readByDevice reads reqs with one batch read per run of requests for the
// same device, for plugins without wapper_read_many (and to find the
// device whose reads trap). A device's failure goes to its entries.
func (p *Plugin) readByDevice(ctx context.Context, reqs []ReadReq, out []abi.BatchEntry) error {
	var handles [64]uint32
	for start := 0; start < len(reqs); {
		dev := reqs[start].Device
		end := start + 1
		for end < len(reqs) && reqs[end].Device == dev && end-start < abi.MaxBatch {
			end++
		}
		hs := handles[:0]
		for _, r := range reqs[start:end] {
			hs = append(hs, r.Handle)
		}
		entries, err := p.ReadBatch(ctx, dev, hs)
		switch {
		case err != nil && wholeCall(ctx, err):
			return err
		case err != nil:
			for i := start; i < end; i++ {
				out[i] = abi.BatchEntry{Err: err}
			}
		default:
			copy(out[start:end], entries)
		}
		start = end
	}
	return nil
}

// manyScratch is the reusable state of one ReadMany call, so that a call
// in steady state allocates nothing.
type manyScratch struct {
	ids  []uint32  // the chunk's device handles, sorted, unique
	devs []*device // devs[i] has handle ids[i]; nil when unknown
	errs []error   // errs[i] fails every reading of devs[i]
	held []*device // the devices whose lock the chunk holds
	req  []byte    // the encoded request
	pos  []int32   // pos[k]: the entry of out the k-th request fills
	pds  []*abi.Property
	ents []abi.BatchEntry

	// Grouping of a ReadMany's requests by home (see groupByHome).
	homes  []*slot
	gid    []int32 // gid[k]: the group of request k
	bounds []int
	next   []int
	order  []int32
	greqs  []ReadReq
	gout   []abi.BatchEntry

	// StateMany's requests, grouping errors and per-device answers, and
	// the indices of the devices it asks one by one.
	sreqs  []ReadReq
	sout   []abi.BatchEntry
	states []StateResult
	later  []int
}

var scratchPool = sync.Pool{New: func() any { return new(manyScratch) }}

// release drops the scratch's references and returns it to the pool.
func (sc *manyScratch) release() {
	clear(sc.devs)
	clear(sc.errs)
	clear(sc.held)
	clear(sc.pds)
	clear(sc.ents)
	clear(sc.homes)
	clear(sc.gout)
	clear(sc.sout)
	clear(sc.states)
	scratchPool.Put(sc)
}

// manyFnKey keys an instance's wapper_read_many function in its ext map;
// wazero gives every looked-up export its own call engine and stack, so
// the function is looked up once per instance.
type manyFnKey struct{}

func (in *instance) readManyFn() api.Function {
	if f, ok := in.ext[manyFnKey{}].(api.Function); ok {
		return f
	}
	f := in.mod.ExportedFunction(abi.ExportReadMany)
	if in.ext == nil {
		in.ext = map[any]any{}
	}
	in.ext[manyFnKey{}] = f
	return f
}

// deviceIndex returns the index of handle id in sc.ids.
func (sc *manyScratch) deviceIndex(id uint32) int {
	i, _ := slices.BinarySearch(sc.ids, id)
	return i
}

// readChunk reads at most abi.MaxBatch requests with one wapper_read_many
// call. It returns a *callErr when the call killed its instance.
func (p *Plugin) readChunk(ctx context.Context, sc *manyScratch, reqs []ReadReq, out []abi.BatchEntry) error {
	sc.ids = sc.ids[:0]
	for _, r := range reqs {
		sc.ids = append(sc.ids, r.Device)
	}
	live := p.lockChunk(sc)
	defer sc.unlock()
	p.fillDeviceErrs(sc, reqs, out)
	if live < 0 {
		return nil
	}
	// The instance that served the first device last most likely knows
	// the others too: the same chunks come back every cycle.
	s, err := p.acquireN(ctx, sc.devs[live].last, len(sc.held))
	if err != nil {
		return err
	}
	defer p.release(s)
	in := s.in
	defer func() { in.curDev = nil }()
	if err := in.sweep(nil); err != nil {
		return err
	}
	for i, d := range sc.devs {
		if d == nil || sc.errs[i] != nil {
			continue
		}
		in.curDev = d
		if err := in.ensure(d); err != nil {
			if in.dead {
				return err
			}
			sc.errs[i] = clipErr(err)
			continue
		}
		d.last = s
	}
	in.curDev = nil
	p.fillDeviceErrs(sc, reqs, out)
	// The request: every reading of a device the instance now knows.
	sc.req, sc.pos, sc.pds = sc.req[:0], sc.pos[:0], sc.pds[:0]
	single := true
	var first uint32
	for k, r := range reqs {
		if out[k].Err != nil {
			continue
		}
		d := sc.devs[sc.deviceIndex(r.Device)]
		pd := d.desc.Property(r.Handle)
		if pd == nil {
			out[k].Err = abi.Errorf(abi.ErrNotFound, "device %s has no property handle %d", d.name(), r.Handle)
			continue
		}
		if len(sc.pos) == 0 {
			first = r.Device
		}
		single = single && r.Device == first
		sc.req = abi.AppendReadReq(sc.req, r.Device, r.Handle)
		sc.pos = append(sc.pos, int32(k))
		sc.pds = append(sc.pds, pd)
	}
	if len(sc.pos) == 0 {
		return nil
	}
	if single {
		in.curDev = sc.devs[sc.deviceIndex(first)]
	}
	werr := in.callMany(sc)
	if in.dead {
		return werr
	}
	for k, at := range sc.pos {
		e := &out[at]
		if werr != nil {
			e.Err = werr
			continue
		}
		*e = sc.ents[k]
		switch ae, _ := e.Err.(*abi.Error); {
		case e.Err == nil:
			e.Value, e.Err = convertFor(sc.pds[k], e.Value)
		case ae != nil:
			ae.Message = clipText(ae.Message)
			if single {
				e.Err = in.withCause(ae)
			}
		}
		e.Err = clipErr(e.Err)
	}
	if werr == nil {
		for i, d := range sc.devs {
			if d != nil && sc.errs[i] == nil {
				d.strikes = 0
			}
		}
	}
	return nil
}

// lockChunk looks up the devices of the handles in sc.ids (sorted and
// deduplicated in place) into sc.devs and locks them in ascending handle
// order, so that two chunks never wait for each other; sc.held holds the
// devices locked, for sc.unlock. sc.errs[i] fails every call for
// sc.devs[i]: unknown, removed or set aside. It returns the index of the
// first device that may be called, or -1.
func (p *Plugin) lockChunk(sc *manyScratch) (live int) {
	slices.Sort(sc.ids)
	sc.ids = slices.Compact(sc.ids)
	sc.devs, sc.errs, sc.held = sc.devs[:0], sc.errs[:0], sc.held[:0]
	now := time.Now()
	live = -1
	for i, id := range sc.ids {
		d := p.device(id)
		sc.devs = append(sc.devs, d)
		sc.errs = append(sc.errs, nil)
		if d == nil {
			sc.errs[i] = abi.Errorf(abi.ErrNotFound, "plugin %s has no device with handle %d", p.name, id)
			continue
		}
		d.mu.Lock()
		sc.held = append(sc.held, d)
		if d.removed {
			sc.errs[i] = abi.Errorf(abi.ErrNotFound, "device %s was removed", d.name())
		} else {
			sc.errs[i] = d.setAside(now)
		}
		if sc.errs[i] == nil && live < 0 {
			live = i
		}
	}
	return live
}

// unlock releases the device locks lockChunk took.
func (sc *manyScratch) unlock() {
	for _, d := range sc.held {
		d.mu.Unlock()
	}
}

// fillDeviceErrs gives every reading of a failed device its device's
// error.
func (p *Plugin) fillDeviceErrs(sc *manyScratch, reqs []ReadReq, out []abi.BatchEntry) {
	for k, r := range reqs {
		if err := sc.errs[sc.deviceIndex(r.Device)]; err != nil {
			out[k] = abi.BatchEntry{Err: err}
		}
	}
}

// callMany passes sc.req to wapper_read_many and decodes its result into
// sc.ents, straight from guest memory (values are copied out), before the
// request buffer is freed. It returns an error for the whole request: a
// *callErr when the instance died, else the plugin's error result or a
// malformed result, as an *abi.Error.
func (in *instance) callMany(sc *manyScratch) error {
	n := len(sc.pos)
	ptr, err := in.put(sc.req)
	if err != nil {
		return err
	}
	in.stack[0], in.stack[1] = uint64(ptr), uint64(n)
	payload, err := in.call(abi.ExportReadMany, in.readManyFn())
	if in.dead {
		return err
	}
	if err == nil {
		var perr error
		if sc.ents, perr = abi.ParseBatchAppend(sc.ents[:0], payload, n); perr != nil {
			in.p.m.errors(abi.ExportReadMany, abi.ErrInvalid).Inc()
			err = abi.Errorf(abi.ErrInvalid, "plugin %s returned a malformed %s result for %d readings: %v", in.p.name, abi.ExportReadMany, n, perr)
		}
	}
	in.stack[0] = uint64(ptr)
	if ferr := in.rawCall(abi.ExportFree, in.free); ferr != nil {
		return ferr
	}
	return clipErr(err)
}

// String describes a request, for logs and test failures.
func (r ReadReq) String() string { return fmt.Sprintf("device %d property %d", r.Device, r.Handle) }
