package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeTwins fills a state database in dir with enough twins that the
// twins bucket spans pages of its own, and closes it.
func writeTwins(t *testing.T, dir string) {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	if _, err := s.SetDesired("default/dev000", "setpoint", "20", "test", false, now); err != nil {
		t.Fatal(err)
	}
	err = s.update(func(tx *bolt.Tx) error { // the rest in one transaction, for speed
		for i := 1; i < 200; i++ {
			tw := Twin{Desired: fmt.Sprint(20 + i), DesiredSeq: uint64(i + 1), DesiredTime: now, DesiredBy: "test"}
			if err := putTwin(bucket(tx, bucketTwins), twinKey(fmt.Sprintf("default/dev%03d", i), "setpoint"), tw); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// twinsLeaf returns the page size, and the id and first element (offset of
// its value in the page, and the value's size) of a leaf page of the twins
// bucket, found with bbolt's page layout.
func twinsLeaf(t *testing.T, path string) (pageSize int, id uint64, valOff, valLen int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pageSize = db.Info().PageSize
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := func(id uint64) []byte { return raw[id*uint64(pageSize) : (id+1)*uint64(pageSize)] }
	ne := binary.NativeEndian
	err = db.View(func(tx *bolt.Tx) error {
		id = uint64(bucket(tx, bucketTwins).Root())
		for {
			info, err := tx.Page(int(id))
			if err != nil {
				return err
			}
			switch info.Type {
			case "branch": // first child: element 0's pgid
				id = ne.Uint64(page(id)[16+8:])
				continue
			case "leaf":
				e := page(id)[16:]
				pos, ksize, vsize := ne.Uint32(e[4:]), ne.Uint32(e[8:]), ne.Uint32(e[12:])
				valOff, valLen = 16+int(pos+ksize), int(vsize)
				return nil
			}
			return fmt.Errorf("twins bucket root %d is a %s page (inline bucket?)", id, info.Type)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(page(id)[valOff:], []byte(`{"desired"`)) {
		t.Fatalf("page %d offset %d does not hold a twin: %q", id, valOff, page(id)[valOff:valOff+20])
	}
	return pageSize, id, valOff, valLen
}

// overwrite writes b at off in the file.
func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// wantCorrupt checks that err is the clear error of a damaged database.
func wantCorrupt(t *testing.T, err error, path string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error from a damaged state database")
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error does not wrap ErrCorrupt: %v", err)
	}
	t.Logf("error: %v", err)
	for _, want := range []string{path, "backup", "move it aside"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error does not mention %q: %v", want, err)
		}
	}
}

// TestOpenDamaged: a state database whose data pages were damaged on disk
// is refused by Open with an error naming the file and saying what to do,
// whatever part of the page was hit; bbolt never panics.
func TestOpenDamaged(t *testing.T) {
	junk := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }
	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"leaf page overwritten", func(t *testing.T, path string) {
			ps, id, _, _ := twinsLeaf(t, path)
			overwrite(t, path, int64(id)*int64(ps), junk(ps, 0x5a))
		}},
		{"leaf elements overwritten", func(t *testing.T, path string) {
			ps, id, _, _ := twinsLeaf(t, path)
			overwrite(t, path, int64(id)*int64(ps)+16, junk(64, 0xff))
		}},
		{"twin value overwritten", func(t *testing.T, path string) {
			ps, id, off, n := twinsLeaf(t, path)
			overwrite(t, path, int64(id)*int64(ps)+int64(off), junk(n, 0))
		}},
		{"everything past the meta pages overwritten", func(t *testing.T, path string) {
			ps, _, _, _ := twinsLeaf(t, path)
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			overwrite(t, path, 2*int64(ps), junk(int(st.Size())-2*ps, 0xa5))
		}},
		{"truncated", func(t *testing.T, path string) {
			ps, _, _, _ := twinsLeaf(t, path)
			if err := os.Truncate(path, 3*int64(ps)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTwins(t, dir)
			path := filepath.Join(dir, "state.db")
			c.damage(t, path)
			s, err := Open(dir)
			if err == nil {
				s.Close()
			}
			wantCorrupt(t, err, path)
			// The file is left as it was, for the operator to restore.
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("state.db gone after a refused open: %v", err)
			}
		})
	}
}

// TestDamagedWhileOpen: a page damaged after Open checked the file makes
// the accessors return ErrCorrupt instead of panicking in bbolt.
func TestDamagedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	writeTwins(t, dir)
	path := filepath.Join(dir, "state.db")
	ps, id, _, _ := twinsLeaf(t, path)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// bbolt maps the file: the damage shows in the next transaction.
	overwrite(t, path, int64(id)*int64(ps), bytes.Repeat([]byte{0x5a}, ps))
	var errs []error
	for i := range 200 {
		if _, err := s.Twins(fmt.Sprintf("default/dev%03d", i)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		t.Fatal("no error reading twins from a damaged page")
	}
	wantCorrupt(t, errs[0], path)
}
