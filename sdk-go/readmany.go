package wapper

import "wapper.dev/wapper/abi"

// wapper_read_many (ABI minor 1): the readings of many devices in one
// call. Every plugin gets it from its Driver's Read, or its BatchReader
// for the properties of one device, so a plugin author writes nothing for
// it. The instance's buffers are reused from call to call: in steady state
// a call allocates nothing beyond what the driver does.

// fullMessage replaces an entry that would take the result past the ABI
// limit; SPEC.md §3.1 keeps room for it in every entry still to come.
const fullMessage = "result full: the readings before this one filled the wapper_read_many result"

// fullEntry is the encoded size of an entry holding fullMessage.
const fullEntry = 5 + len(fullMessage)

// manyScratch holds the buffers of wapper_read_many, kept by the instance.
type manyScratch struct {
	reqs  []abi.ReadReq
	props []*Property
	ok    []bool // ok[i]: the i-th request of a device's run names a property
}

// callReadMany reads the requests encoded in b, (device, property) pairs
// of u32 each, and returns their entries in request order.
func (in *instance) callReadMany(b []byte) (res []byte) {
	defer in.guard(&res)
	if len(b)/abi.ReadReqSize > abi.MaxBatch {
		return in.finish(Errorf(ErrTooLarge, "read_many of %d requests exceeds %d", len(b)/abi.ReadReqSize, abi.MaxBatch), nil)
	}
	reqs, err := abi.ParseReadReqs(in.many.reqs[:0], b)
	in.many.reqs = reqs
	if err != nil {
		return in.finish(Errorf(ErrInvalid, "%v", err), nil)
	}
	in.result = in.opReadMany(append(in.result[:0], byte(OK)), reqs)
	return in.result
}

// opReadMany appends one entry per request to dst: a run of requests for
// the same device is read with the driver's BatchReader when it has one,
// else property by property with Read. An unknown device or property
// fails its own entries only.
func (in *instance) opReadMany(dst []byte, reqs []abi.ReadReq) []byte {
	sc := &in.many
	for start := 0; start < len(reqs); {
		id := reqs[start].Device
		end := start + 1
		for end < len(reqs) && reqs[end].Device == id {
			end++
		}
		run := reqs[start:end]
		start = end
		left := len(reqs) - end // entries after this run
		d, err := in.lookup(id)
		if err != nil {
			for i := range run {
				dst = appendErrEntry(dst, err, left+len(run)-1-i)
			}
			continue
		}
		sc.props, sc.ok = sc.props[:0], sc.ok[:0]
		for _, r := range run {
			p := d.Property(r.Handle)
			sc.ok = append(sc.ok, p != nil)
			if p != nil {
				sc.props = append(sc.props, p)
			}
		}
		dst = in.readRun(dst, d, run, left)
		clear(sc.props)
	}
	return dst
}

// readRun appends the entries of one device's run of requests; sc.props
// holds its known properties and sc.ok which requests they are.
func (in *instance) readRun(dst []byte, d *Device, run []abi.ReadReq, left int) []byte {
	sc := &in.many
	var vals []Value
	var errs []error
	br, batch := in.drv.(BatchReader)
	if batch && len(sc.props) > 0 {
		vals, errs = br.ReadBatch(d, sc.props)
		if len(vals) != len(sc.props) || (errs != nil && len(errs) != len(sc.props)) {
			err := Errorf(ErrInternal, "ReadBatch returned %d values and %d errors for %d properties", len(vals), len(errs), len(sc.props))
			for i := range run {
				dst = appendErrEntry(dst, err, left+len(run)-1-i)
			}
			return dst
		}
	}
	k := 0 // the next of sc.props
	for i, r := range run {
		after := left + len(run) - 1 - i
		if !sc.ok[i] {
			dst = appendErrEntry(dst, Errorf(ErrNotFound, "device %s has no property handle %d", d, r.Handle), after)
			continue
		}
		p := sc.props[k]
		var v Value
		var err error
		if batch {
			v = vals[k]
			if errs != nil {
				err = errs[k]
			}
		} else {
			v, err = in.drv.Read(d, p)
		}
		k++
		if err == nil && !v.IsValid() {
			err = Errorf(ErrInternal, "property %q: plugin returned no value and no error", p.Name)
		}
		if err != nil {
			dst = appendErrEntry(dst, err, after)
			continue
		}
		if !fits(dst, 5+v.EncodedLen(), after) {
			dst = appendFullEntry(dst)
			continue
		}
		dst = appendValueEntry(dst, v)
	}
	return dst
}

// fits reports whether an entry of n bytes fits in the result dst with
// room left for after more entries holding fullMessage.
func fits(dst []byte, n, after int) bool {
	return len(dst)+n+after*fullEntry <= abi.MaxMessage
}

// appendErrEntry appends a failed entry with err's code and message, or
// a "result full" entry when the message does not fit.
func appendErrEntry(dst []byte, err error, after int) []byte {
	msg := abi.MessageOf(err)
	if !fits(dst, 5+len(msg), after) {
		return appendFullEntry(dst)
	}
	n := len(msg)
	dst = append(dst, byte(abi.CodeOf(err)), byte(n), byte(n>>8), byte(n>>16), byte(n>>24))
	return append(dst, msg...)
}

func appendFullEntry(dst []byte) []byte {
	n := len(fullMessage)
	dst = append(dst, byte(ErrTooLarge), byte(n), byte(n>>8), byte(n>>16), byte(n>>24))
	return append(dst, fullMessage...)
}
