package runtime

import (
	"context"
	"errors"

	"wapper.dev/wapper/abi"
)

// StateResult is a device's state as [Plugin.StateMany] answers it: the
// state and its reason, or the error of asking.
type StateResult struct {
	State  abi.State
	Reason string
	Err    error
}

// StateMany asks the state of many devices, each with its own
// wapper_state call as [Plugin.State] does, but taking one pool slot per
// home instance (per abi.MaxBatch devices) instead of one per device: at
// thousands of devices, a slot hand-over per state query costs more than
// the query, and devices queued one by one for a slot hold up the reads
// queued behind their locks. out is reused: it is resliced to len(ids)
// entries in the order of ids.
//
// The devices of a chunk are locked in ascending handle order before the
// slot is taken, as in [Plugin.ReadMany]. When a device's call kills the
// instance, that device takes the strike, and the devices of the chunk
// not asked yet are asked one by one with [Plugin.State].
func (p *Plugin) StateMany(ctx context.Context, ids []uint32, out []StateResult) []StateResult {
	out = resizeStates(out, len(ids))
	if len(ids) == 0 {
		return out
	}
	sc := scratchPool.Get().(*manyScratch)
	defer sc.release()
	sc.sreqs = sc.sreqs[:0]
	for _, id := range ids {
		sc.sreqs = append(sc.sreqs, ReadReq{Device: id})
	}
	sc.sout = resizeEntries(sc.sout, len(ids))
	sc.groupByHome(p, sc.sreqs, sc.sout)
	for k := range out {
		out[k].Err = sc.sout[k].Err
	}
	sc.later = sc.later[:0]
	for g := 0; g < len(sc.bounds)-1; g++ {
		order := sc.order[sc.bounds[g]:sc.bounds[g+1]]
		for start := 0; start < len(order); start += abi.MaxBatch {
			p.stateChunk(ctx, sc, ids, order[start:min(start+abi.MaxBatch, len(order))], out)
		}
	}
	for _, k := range sc.later {
		st, reason, err := p.State(ctx, ids[k])
		out[k] = StateResult{State: st, Reason: reason, Err: err}
	}
	return out
}

// stateChunk asks the state of the devices ids[k] for k in chunk, which
// share a home, on one slot, and fills their entries of out; an error for
// the whole chunk (no slot came free, the plugin closed) goes to every
// entry. The indices of the devices left unasked because the instance died
// go to sc.later.
func (p *Plugin) stateChunk(ctx context.Context, sc *manyScratch, ids []uint32, chunk []int32, out []StateResult) (err error) {
	sc.ids = sc.ids[:0]
	for _, k := range chunk {
		sc.ids = append(sc.ids, ids[k])
	}
	live := p.lockChunk(sc)
	sc.states = resizeStates(sc.states, len(sc.ids))
	for i := range sc.errs {
		if sc.errs[i] == nil {
			sc.errs[i] = errNotAsked
		}
	}
	defer func() {
		sc.unlock()
		for _, k := range chunk {
			i := sc.deviceIndex(ids[k])
			switch {
			case sc.errs[i] != errNotAsked:
				out[k] = sc.states[i]
				out[k].Err = sc.errs[i]
			case err != nil:
				out[k].Err = err
			default:
				sc.later = append(sc.later, int(k))
			}
		}
	}()
	if live < 0 {
		return nil
	}
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
		if sc.errs[i] != errNotAsked {
			continue
		}
		if in.dead {
			break // the rest are asked one by one, once the locks are released
		}
		in.curDev = d
		err := in.ensure(d)
		var r StateResult
		if err == nil {
			r.State, r.Reason, err = in.askState(d)
		}
		p.struck(d, err)
		sc.states[i], sc.errs[i] = r, clipErr(err)
	}
	return nil
}

// errNotAsked marks, in a chunk's scratch, a device whose state is still
// to be asked.
var errNotAsked = errors.New("state not asked")

// Home returns the instance that holds device id (a slot number), or -1
// when none does yet or the device is unknown. Calls for devices of one
// home run one after another, so a caller that batches many devices'
// calls (the host's scheduler) batches them per home, and the batches of
// different homes run in parallel.
func (p *Plugin) Home(id uint32) int {
	if d := p.device(id); d != nil {
		if s := d.home.Load(); s != nil {
			return s.id
		}
	}
	return -1
}

// resizeStates reslices out to n zeroed entries, reusing its array.
func resizeStates(out []StateResult, n int) []StateResult {
	if cap(out) < n {
		return make([]StateResult, n)
	}
	out = out[:n]
	clear(out)
	return out
}
