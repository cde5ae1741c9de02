package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrCorrupt is wrapped by the errors of a state database whose pages are
// damaged (a failing disk or file system, a partial copy, an edited file).
// Such a database is never repaired or emptied silently: the error says to
// restore it from a backup or to move it aside.
var ErrCorrupt = errors.New("state database is damaged")

// corruptError wraps cause as ErrCorrupt and says what the operator can do.
func corruptError(path string, cause error) error {
	return fmt.Errorf("%w: %s: %w. Its device twins, desired values and plugin data are never discarded silently: "+
		"stop wapper-host if it runs, then restore %s from a backup, or move it aside (mv %s %s.damaged) to start "+
		"with an empty state, in which devices come back from --manifests and the cloud without their stored twins "+
		"and plugin kv data",
		ErrCorrupt, path, cause, path, path, path)
}

// Guard turns a panic of bbolt (which a damaged page causes while it is
// read: a page that names another id, an element past its page) into an
// error wrapping [ErrCorrupt] in *err, naming the database file at path.
// Use it around a bbolt transaction as "defer store.Guard(path, &err)()":
// until the deferred call it also makes memory faults on the mapped file
// recoverable panics for the calling goroutine, so a page pointer into a
// hole of the file becomes an error too instead of killing the process.
// bbolt rolls the transaction back as the panic passes.
func Guard(path string, err *error) func() {
	old := debug.SetPanicOnFault(true)
	return func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			*err = corruptError(path, fmt.Errorf("bbolt failed reading it: %v", r))
		}
	}
}

// errLocked: another process holds the database.
var errLocked = errors.New("timed out waiting for the file lock")

// checkFile verifies the page structure of the file at path straight from
// the file, under the file lock, before bbolt opens it: bbolt reads pages
// (the freelist already in bolt.Open) through a memory map without bounds
// checks, so a damaged page pointer would send it outside the file.
func checkFile(path string, timeout time.Duration) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open state database %s: %w", path, err)
	}
	defer f.Close()
	if err := lockFile(f, timeout); err != nil {
		return fmt.Errorf("open state database %s: %w (is another wapper-host using this --state-dir?)", path, err)
	}
	if err := checkPages(f); err != nil {
		return corruptError(path, err)
	}
	return nil
}

// check runs bbolt's own consistency check (tx.Check) on the open
// database, then checks that every stored object and twin decodes.
func check(db *bolt.DB, path string) (err error) {
	defer Guard(path, &err)()
	return db.View(func(tx *bolt.Tx) error {
		var errs []string
		for e := range tx.Check() {
			if len(errs) < 5 {
				errs = append(errs, e.Error())
			}
		}
		if len(errs) > 0 {
			return corruptError(path, fmt.Errorf("consistency check failed: %s", strings.Join(errs, "; ")))
		}
		if err := checkValues(tx); err != nil {
			return corruptError(path, err)
		}
		return nil
	})
}

// checkedBucket returns this package's bucket called name in either
// layout: nested in TopStore, or at the top level in a database that
// Open has yet to migrate. It returns nil when there is none.
func checkedBucket(tx *bolt.Tx, name []byte) *bolt.Bucket {
	if top := tx.Bucket(topStore); top != nil {
		if b := top.Bucket(name); b != nil {
			return b
		}
	}
	return tx.Bucket(name)
}

// checkValues decodes the stored objects and twins, whose bytes bbolt
// does not checksum.
func checkValues(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketObjects, bucketTwins} {
		b := checkedBucket(tx, name)
		if b == nil {
			continue
		}
		err := b.ForEach(func(k, v []byte) error {
			if !json.Valid(v) {
				return fmt.Errorf("bucket %s: value of key %q is not the JSON written there", name, k)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if b := checkedBucket(tx, bucketReported); b != nil {
		return b.ForEach(func(k, v []byte) error {
			if len(v) < 8 {
				return fmt.Errorf("bucket %s: value of key %q is %d bytes, shorter than its timestamp", bucketReported, k, len(v))
			}
			return nil
		})
	}
	return nil
}

// bbolt's file layout (go.etcd.io/bbolt/internal/common), in the machine's
// byte order: every page starts with a 16-byte header (id uint64, flags
// uint16, count uint16, overflow uint32) followed by its elements.
const (
	pageHeaderSize  = 16
	elementSize     = 16 // branch: pos, ksize uint32, pgid uint64; leaf: flags, pos, ksize, vsize uint32
	bucketHeaderLen = 16 // root pgid, sequence uint64
	flagBranch      = 0x01
	flagLeaf        = 0x02
	flagMeta        = 0x04
	flagFreelist    = 0x10
	leafBucket      = 0x01
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	noFreelist      = ^uint64(0)
	metaSumLen      = 56 // bytes of the meta covered by its checksum
	maxPageSize     = 1 << 20
)

var ne = binary.NativeEndian

type meta struct {
	pageSize      uint64
	root          uint64
	freelist, hwm uint64
	txid          uint64
}

// readMeta decodes and validates the meta page at off, as bbolt does
// (magic, version, checksum).
func readMeta(f *os.File, off int64) (meta, bool) {
	b := make([]byte, pageHeaderSize+metaSumLen+8)
	if _, err := f.ReadAt(b, off); err != nil {
		return meta{}, false
	}
	if ne.Uint16(b[8:]) != flagMeta {
		return meta{}, false
	}
	m := b[pageHeaderSize:]
	h := fnv.New64a()
	h.Write(m[:metaSumLen])
	if ne.Uint32(m[0:]) != boltMagic || ne.Uint32(m[4:]) != boltVersion || ne.Uint64(m[metaSumLen:]) != h.Sum64() {
		return meta{}, false
	}
	return meta{pageSize: uint64(ne.Uint32(m[8:])), root: ne.Uint64(m[16:]), freelist: ne.Uint64(m[32:]), hwm: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:])}, true
}

// pageWalker reads pages from the file and checks that every page bbolt
// would reach from the meta page it uses lies inside the file, names
// itself, has a known type and holds its elements.
type pageWalker struct {
	f    *os.File
	size uint64
	m    meta
	seen map[uint64]bool
}

// checkPages walks the page tree of f. An empty file is new, and fine.
func checkPages(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() == 0 {
		return nil
	}
	m0, ok0 := readMeta(f, 0)
	var m1 meta
	ok1 := false
	// Meta page 1 sits one page in; take the page size from meta 0, or
	// try the usual ones when meta 0 is the damaged one.
	sizes := []uint64{uint64(os.Getpagesize()), 4096, 8192, 16384, 65536}
	if ok0 {
		sizes = []uint64{m0.pageSize}
	}
	for _, ps := range sizes {
		if m1, ok1 = readMeta(f, int64(ps)); ok1 {
			break
		}
	}
	// bbolt uses the valid meta with the highest transaction id.
	var m meta
	switch {
	case ok0 && ok1 && m1.txid > m0.txid, !ok0 && ok1:
		m = m1
	case ok0:
		m = m0
	default:
		return errors.New("both meta pages are invalid")
	}
	if m.pageSize < 1024 || m.pageSize > maxPageSize || m.pageSize&(m.pageSize-1) != 0 {
		return fmt.Errorf("meta page: page size %d", m.pageSize)
	}
	w := &pageWalker{f: f, size: uint64(st.Size()), m: m, seen: map[uint64]bool{}}
	if m.hwm < 2 || m.hwm > w.size/m.pageSize {
		return fmt.Errorf("meta page: %d pages in use but the file holds %d (truncated?)", m.hwm, w.size/m.pageSize)
	}
	if m.freelist != noFreelist {
		if err := w.freelist(m.freelist); err != nil {
			return err
		}
	}
	return w.tree(m.root, "root")
}

// page reads page id with its overflow pages, checking its header.
func (w *pageWalker) page(id uint64, want uint16, where string) ([]byte, error) {
	if id < 2 || id >= w.m.hwm {
		return nil, fmt.Errorf("%s: page %d is outside the %d pages in use", where, id, w.m.hwm)
	}
	hdr := make([]byte, pageHeaderSize)
	if _, err := w.f.ReadAt(hdr, int64(id*w.m.pageSize)); err != nil {
		return nil, fmt.Errorf("%s: read page %d: %w", where, id, err)
	}
	if got := ne.Uint64(hdr); got != id {
		return nil, fmt.Errorf("%s: page %d says it is page %d", where, id, got)
	}
	flags := ne.Uint16(hdr[8:])
	if want != 0 && flags != want || want == 0 && flags != flagBranch && flags != flagLeaf {
		return nil, fmt.Errorf("%s: page %d has type %#x", where, id, flags)
	}
	n := uint64(ne.Uint32(hdr[12:])) + 1
	if n > w.m.hwm-id {
		return nil, fmt.Errorf("%s: page %d runs %d pages, past the %d in use", where, id, n, w.m.hwm)
	}
	for i := range n {
		if w.seen[id+i] {
			return nil, fmt.Errorf("%s: page %d is referenced twice", where, id+i)
		}
		w.seen[id+i] = true
	}
	buf := make([]byte, n*w.m.pageSize)
	if _, err := w.f.ReadAt(buf, int64(id*w.m.pageSize)); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: read page %d: %w", where, id, err)
	}
	return buf, nil
}

func (w *pageWalker) freelist(id uint64) error {
	p, err := w.page(id, flagFreelist, "freelist")
	if err != nil {
		return err
	}
	idx, count := uint64(0), uint64(ne.Uint16(p[10:]))
	if count == 0xFFFF {
		if len(p) < pageHeaderSize+8 {
			return fmt.Errorf("freelist page %d is too short", id)
		}
		idx, count = 1, ne.Uint64(p[pageHeaderSize:])
	}
	if count > (uint64(len(p))-pageHeaderSize)/8-idx {
		return fmt.Errorf("freelist page %d claims %d free pages, more than it holds", id, count)
	}
	for i := range count {
		free := ne.Uint64(p[pageHeaderSize+(idx+i)*8:])
		if free < 2 || free >= w.m.hwm {
			return fmt.Errorf("freelist page %d lists page %d, outside the %d pages in use", id, free, w.m.hwm)
		}
	}
	return nil
}

// tree checks the b+tree of a bucket rooted at page id.
func (w *pageWalker) tree(id uint64, where string) error {
	p, err := w.page(id, 0, where)
	if err != nil {
		return err
	}
	return w.elements(p, fmt.Sprintf("%s, page %d", where, id), true)
}

// elements checks the elements of page p (a page read from the file, or an
// inline bucket's page), recursing into child pages and sub-buckets.
func (w *pageWalker) elements(p []byte, where string, file bool) error {
	if len(p) < pageHeaderSize {
		return fmt.Errorf("%s: %d bytes, shorter than a page header", where, len(p))
	}
	flags, count := ne.Uint16(p[8:]), uint64(ne.Uint16(p[10:]))
	if flags != flagBranch && flags != flagLeaf || !file && flags != flagLeaf {
		return fmt.Errorf("%s: type %#x", where, flags)
	}
	if pageHeaderSize+count*elementSize > uint64(len(p)) {
		return fmt.Errorf("%s: %d elements do not fit in %d bytes", where, count, len(p))
	}
	for i := range count {
		off := pageHeaderSize + i*elementSize
		e := p[off : off+elementSize]
		var pos, ksize, vsize uint64
		if flags == flagBranch {
			pos, ksize = uint64(ne.Uint32(e[0:])), uint64(ne.Uint32(e[4:]))
		} else {
			pos, ksize, vsize = uint64(ne.Uint32(e[4:])), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
		}
		start := off + pos
		if start+ksize+vsize > uint64(len(p)) || start+ksize+vsize < start {
			return fmt.Errorf("%s: element %d (key %d, value %d bytes at %d) runs past the page", where, i, ksize, vsize, start)
		}
		switch {
		case flags == flagBranch:
			if err := w.tree(ne.Uint64(e[8:]), where); err != nil {
				return err
			}
		case ne.Uint32(e[0:])&leafBucket != 0:
			key := p[start : start+ksize]
			val := p[start+ksize : start+ksize+vsize]
			sub := fmt.Sprintf("bucket %q", key)
			if len(val) < bucketHeaderLen {
				return fmt.Errorf("%s: %s: header of %d bytes", where, sub, len(val))
			}
			if root := ne.Uint64(val); root != 0 {
				if err := w.tree(root, sub); err != nil {
					return err
				}
			} else if err := w.elements(val[bucketHeaderLen:], sub+" (inline)", false); err != nil {
				return err
			}
		}
	}
	return nil
}
