// Package store keeps the embedded registry's content on the filesystem.
//
// Content is addressed by digest (sha256 or sha512) and verified before it
// becomes visible. Every write goes to a temporary file in the same
// filesystem, is flushed, and is renamed into place, so a process killed at
// any point (kill -9 included) leaves either the old state or the new one,
// never a partial blob. Repositories hold links to content: a blob or
// manifest exists in a repository only while its link does, and tags and
// referrers are small files beside those links.
//
// Layout under the root:
//
//	blobs/<alg>/<hex[:2]>/<hex>          content of blobs and manifests
//	uploads/<id>                         an upload in progress
//	tmp/                                 temporary files, removed on Open
//	repos/<name>/_blobs/<alg>/<hex>      blob link (empty)
//	repos/<name>/_manifests/<alg>/<hex>  manifest link (holds its media type)
//	repos/<name>/_tags/<tag>             tag (holds the manifest digest)
//	repos/<name>/_referrers/<alg>/<hex>/<alg>-<hex>  referrer descriptor (JSON)
//
// One process owns a root at a time; Open takes an exclusive lock.
package store

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
)

// Errors a caller maps to protocol errors.
var (
	ErrNotFound       = errors.New("not found")
	ErrDigestMismatch = errors.New("content does not match its digest")
	ErrBadDigest      = errors.New("unsupported or malformed digest")
	ErrBadName        = errors.New("invalid repository name or tag")
	ErrRange          = errors.New("upload range does not follow the stored data")
	ErrLocked         = errors.New("root is in use by another process")
)

var (
	nameRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	idRE   = regexp.MustCompile(`^[a-f0-9]{32}$`)
)

// ValidName reports whether name is a valid repository name.
func ValidName(name string) bool { return len(name) <= 255 && nameRE.MatchString(name) }

// ValidTag reports whether tag is a valid tag.
func ValidTag(tag string) bool { return tagRE.MatchString(tag) }

// ParseDigest parses a sha256 or sha512 digest and rejects everything else.
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %w", ErrBadDigest, s, err)
	}
	if a := d.Algorithm(); a != digest.SHA256 && a != digest.SHA512 {
		return "", fmt.Errorf("%w: %q: only sha256 and sha512 are supported", ErrBadDigest, s)
	}
	return d, nil
}

// UploadTTL is how long an untouched upload is kept across restarts.
const UploadTTL = 7 * 24 * time.Hour

// Store is a content store rooted at one directory.
type Store struct {
	root string
	lock *os.File
	// mu guards the content files under blobs/ against removal while a
	// link to them is being made: writers of blob and manifest links hold
	// it shared, collect (which removes unlinked content) exclusively.
	mu sync.RWMutex
}

// Open opens (creating if needed) the store at root, takes its lock, and
// removes temporary files that a killed process left behind.
func Open(root string) (*Store, error) {
	for _, d := range []string{"blobs", "uploads", "tmp", "repos"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, fmt.Errorf("create store directory: %w (check that %s is writable)", err, root)
		}
	}
	lf, err := os.OpenFile(filepath.Join(root, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		return nil, fmt.Errorf("%w: %s (stop the other registry or use another --root)", ErrLocked, root)
	}
	s := &Store{root: root, lock: lf}
	tmp := filepath.Join(root, "tmp")
	ents, _ := os.ReadDir(tmp)
	for _, e := range ents {
		_ = os.RemoveAll(filepath.Join(tmp, e.Name()))
	}
	// Uploads survive a restart so that clients can resume them; ones
	// nobody touched for UploadTTL are abandoned.
	ups, _ := os.ReadDir(filepath.Join(root, "uploads"))
	for _, e := range ups {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > UploadTTL {
			_ = os.Remove(filepath.Join(root, "uploads", e.Name()))
		}
	}
	return s, nil
}

// Close releases the store's lock.
func (s *Store) Close() error { return s.lock.Close() }

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

func (s *Store) blobPath(d digest.Digest) string {
	h := d.Encoded()
	return filepath.Join(s.root, "blobs", string(d.Algorithm()), h[:2], h)
}

func (s *Store) repoPath(name string, parts ...string) string {
	return filepath.Join(append([]string{s.root, "repos", filepath.FromSlash(name)}, parts...)...)
}

func linkPath(s *Store, name, kind string, d digest.Digest) string {
	return s.repoPath(name, kind, string(d.Algorithm()), d.Encoded())
}

// tempFile creates a file in the store's tmp directory.
func (s *Store) tempFile() (*os.File, error) {
	return os.CreateTemp(filepath.Join(s.root, "tmp"), "w-")
}

// commit flushes f, closes it and renames it to dst, then flushes dst's
// directory so that the rename survives a crash.
func commit(f *os.File, dst string) error {
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		os.Remove(f.Name())
		return err
	}
	if dir, err := os.Open(filepath.Dir(dst)); err == nil {
		_ = dir.Sync()
		dir.Close()
	}
	return nil
}

// writeAtomic replaces dst with data.
func (s *Store) writeAtomic(dst string, data []byte) error {
	f, err := s.tempFile()
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	return commit(f, dst)
}

// HasContent reports whether the content for d is stored (in any
// repository) and its size.
func (s *Store) HasContent(d digest.Digest) (int64, bool) {
	fi, err := os.Stat(s.blobPath(d))
	if err != nil {
		return 0, false
	}
	return fi.Size(), true
}

// PutContent stores r as the content of d, verifying it while it is
// written. Concurrent puts of the same digest are safe: each writes its
// own temporary file and the renames replace identical content.
func (s *Store) PutContent(d digest.Digest, r io.Reader) (int64, error) {
	f, err := s.tempFile()
	if err != nil {
		return 0, err
	}
	v := d.Verifier()
	n, err := io.Copy(io.MultiWriter(f, v), r)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return n, err
	}
	if !v.Verified() {
		f.Close()
		os.Remove(f.Name())
		return n, ErrDigestMismatch
	}
	return n, commit(f, s.blobPath(d))
}

// OpenContent opens the content of d.
func (s *Store) OpenContent(d digest.Digest) (*os.File, error) {
	f, err := os.Open(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	return f, err
}

// ReadContent returns the content of d.
func (s *Store) ReadContent(d digest.Digest) ([]byte, error) {
	b, err := os.ReadFile(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	return b, err
}

// --- blob links -----------------------------------------------------------

// LinkBlob makes stored content d visible as a blob of repository name.
func (s *Store) LinkBlob(name string, d digest.Digest) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.HasContent(d); !ok {
		return ErrNotFound
	}
	return s.writeAtomic(linkPath(s, name, "_blobs", d), nil)
}

// StatBlob returns the size of blob d in repository name.
func (s *Store) StatBlob(name string, d digest.Digest) (int64, error) {
	if _, err := os.Stat(linkPath(s, name, "_blobs", d)); err != nil {
		return 0, ErrNotFound
	}
	n, ok := s.HasContent(d)
	if !ok {
		return 0, ErrNotFound
	}
	return n, nil
}

// DeleteBlob removes blob d from repository name. The content itself is
// removed when no repository links it any more.
func (s *Store) DeleteBlob(name string, d digest.Digest) error {
	if err := os.Remove(linkPath(s, name, "_blobs", d)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotFound
		}
		return err
	}
	s.collect(d)
	return nil
}

// collect removes the content of d when no repository links it as a blob
// or manifest.
func (s *Store) collect(d digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	used := false
	rel := filepath.Join(string(d.Algorithm()), d.Encoded())
	_ = filepath.WalkDir(filepath.Join(s.root, "repos"), func(p string, e fs.DirEntry, err error) error {
		if err != nil || used {
			return filepath.SkipAll
		}
		if e.IsDir() && (e.Name() == "_blobs" || e.Name() == "_manifests") {
			if _, err := os.Stat(filepath.Join(p, rel)); err == nil {
				used = true
				return filepath.SkipAll
			}
			return filepath.SkipDir
		}
		if e.IsDir() && (e.Name() == "_tags" || e.Name() == "_referrers") {
			return filepath.SkipDir
		}
		return nil
	})
	if !used {
		_ = os.Remove(s.blobPath(d))
	}
}

// --- uploads --------------------------------------------------------------

// NewUpload starts an upload and returns its id.
func (s *Store) NewUpload() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b[:])
	f, err := os.OpenFile(s.uploadPath(id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return "", err
	}
	return id, f.Close()
}

func (s *Store) uploadPath(id string) string { return filepath.Join(s.root, "uploads", id) }

// UploadSize returns how many bytes upload id holds.
func (s *Store) UploadSize(id string) (int64, error) {
	if !idRE.MatchString(id) {
		return 0, ErrNotFound
	}
	fi, err := os.Stat(s.uploadPath(id))
	if err != nil {
		return 0, ErrNotFound
	}
	return fi.Size(), nil
}

// AppendUpload appends r to upload id. When start is not negative it must
// equal the upload's current size (ErrRange otherwise). It returns the new
// size.
func (s *Store) AppendUpload(id string, start int64, r io.Reader) (int64, error) {
	size, err := s.UploadSize(id)
	if err != nil {
		return 0, err
	}
	if start >= 0 && start != size {
		return size, ErrRange
	}
	f, err := os.OpenFile(s.uploadPath(id), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return size, ErrNotFound
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return size + n, err
}

// FinishUpload verifies upload id against d, moves it into the content
// store and links it as a blob of repository name. The upload is removed
// whether or not it matches.
func (s *Store) FinishUpload(name, id string, d digest.Digest) (int64, error) {
	if _, err := s.UploadSize(id); err != nil {
		return 0, err
	}
	p := s.uploadPath(id)
	defer os.Remove(p)
	f, err := os.Open(p)
	if err != nil {
		return 0, ErrNotFound
	}
	defer f.Close()
	return s.PutBlob(name, d, f)
}

// PutBlob stores r as the content of d and links it into repository name.
func (s *Store) PutBlob(name string, d digest.Digest, r io.Reader) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n, err := s.PutContent(d, r)
	if err != nil {
		return n, err
	}
	return n, s.writeAtomic(linkPath(s, name, "_blobs", d), nil)
}

// CancelUpload removes upload id.
func (s *Store) CancelUpload(id string) error {
	if _, err := s.UploadSize(id); err != nil {
		return err
	}
	return os.Remove(s.uploadPath(id))
}

// --- manifests ------------------------------------------------------------

// Referrer is the descriptor of a manifest that names a subject.
type Referrer struct {
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// PutManifest stores a verified manifest body under digest d in repository
// name with its media type, and sets tags to point at it.
func (s *Store) PutManifest(name string, d digest.Digest, mediaType string, body []byte, tags []string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, err := s.PutContent(d, bytes.NewReader(body)); err != nil {
		return err
	}
	if err := s.writeAtomic(linkPath(s, name, "_manifests", d), []byte(mediaType)); err != nil {
		return err
	}
	for _, t := range tags {
		if err := s.writeAtomic(s.repoPath(name, "_tags", t), []byte(d.String())); err != nil {
			return err
		}
	}
	return nil
}

// AddReferrer records ref as a referrer of subject in repository name.
func (s *Store) AddReferrer(name string, subject digest.Digest, ref Referrer, desc []byte) error {
	p := filepath.Join(s.repoPath(name, "_referrers", string(subject.Algorithm()), subject.Encoded()),
		string(ref.Digest.Algorithm())+"-"+ref.Digest.Encoded())
	return s.writeAtomic(p, desc)
}

// Referrers returns the raw descriptors of subject's referrers in name.
func (s *Store) Referrers(name string, subject digest.Digest) ([][]byte, error) {
	dir := s.repoPath(name, "_referrers", string(subject.Algorithm()), subject.Encoded())
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil
	}
	var out [][]byte
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err == nil {
			out = append(out, b)
		}
	}
	return out, nil
}

// Resolve returns the digest a tag points to in repository name.
func (s *Store) Resolve(name, tag string) (digest.Digest, error) {
	b, err := os.ReadFile(s.repoPath(name, "_tags", tag))
	if err != nil {
		return "", ErrNotFound
	}
	return digest.Parse(strings.TrimSpace(string(b)))
}

// HasManifest reports whether repository name holds manifest d.
func (s *Store) HasManifest(name string, d digest.Digest) bool {
	if _, err := os.Stat(linkPath(s, name, "_manifests", d)); err != nil {
		return false
	}
	_, ok := s.HasContent(d)
	return ok
}

// GetManifest returns manifest d of repository name and its media type.
func (s *Store) GetManifest(name string, d digest.Digest) (body []byte, mediaType string, err error) {
	mt, err := os.ReadFile(linkPath(s, name, "_manifests", d))
	if err != nil {
		return nil, "", ErrNotFound
	}
	body, err = s.ReadContent(d)
	return body, string(mt), err
}

// DeleteTag removes a tag from repository name.
func (s *Store) DeleteTag(name, tag string) error {
	if err := os.Remove(s.repoPath(name, "_tags", tag)); err != nil {
		return ErrNotFound
	}
	return nil
}

// DeleteManifest removes manifest d from repository name, with every tag
// pointing at it and its entry in its subject's referrers. subject may be
// empty.
func (s *Store) DeleteManifest(name string, d digest.Digest, subject digest.Digest) error {
	if err := os.Remove(linkPath(s, name, "_manifests", d)); err != nil {
		return ErrNotFound
	}
	tags, _ := s.Tags(name)
	for _, t := range tags {
		if got, err := s.Resolve(name, t); err == nil && got == d {
			_ = os.Remove(s.repoPath(name, "_tags", t))
		}
	}
	if subject != "" {
		_ = os.Remove(filepath.Join(s.repoPath(name, "_referrers", string(subject.Algorithm()), subject.Encoded()),
			string(d.Algorithm())+"-"+d.Encoded()))
	}
	s.collect(d)
	return nil
}

// RepoExists reports whether repository name has ever held content.
func (s *Store) RepoExists(name string) bool {
	_, err := os.Stat(s.repoPath(name))
	return err == nil
}

// Tags returns the tags of repository name in lexical order.
func (s *Store) Tags(name string) ([]string, error) {
	ents, err := os.ReadDir(s.repoPath(name, "_tags"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	tags := make([]string, 0, len(ents))
	for _, e := range ents {
		if ValidTag(e.Name()) {
			tags = append(tags, e.Name())
		}
	}
	sort.Strings(tags)
	return tags, nil
}
