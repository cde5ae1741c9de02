package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"wapper.dev/wapper/internal/regtest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/registry/artifact"
	"wapper.dev/wapper/registry/client"
	"wapper.dev/wapper/registry/server"
	"wapper.dev/wapper/registry/store"
)

func repo(t *testing.T, addr, name string) *remote.Repository {
	t.Helper()
	r, err := remote.NewRepository(addr + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	r.PlainHTTP = true
	r.Client = &auth.Client{Credential: auth.StaticCredential(addr, auth.Credential{Username: regtest.User, Password: regtest.Password})}
	return r
}

func randomBlob(t *testing.T, n int) ([]byte, ocispec.Descriptor) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b, ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(b), Size: int64(n)}
}

// do sends an authenticated request and returns the response with its
// body read.
func do(t *testing.T, method, url string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(regtest.User, regtest.Password)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

// TestConcurrentPushesOfOneBlob pushes the same blob from many clients at
// once, into one repository and into several.
func TestConcurrentPushesOfOneBlob(t *testing.T) {
	r := regtest.Start(t, false)
	data, desc := randomBlob(t, 3<<20)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "same/repo"
			if i%2 == 1 {
				name = fmt.Sprintf("other/repo%d", i)
			}
			if err := repo(t, r.Addr, name).Blobs().Push(context.Background(), desc, bytes.NewReader(data)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, name := range []string{"same/repo", "other/repo1", "other/repo15"} {
		rc, err := repo(t, r.Addr, name).Blobs().Fetch(context.Background(), desc)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: blob differs after concurrent pushes", name)
		}
	}
	checkStoreIntact(t, r.Store.Root())
}

// checkStoreIntact hashes every stored blob against its name and checks
// that no temporary file is left.
func checkStoreIntact(t *testing.T, root string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(root, "blobs"), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		alg := filepath.Base(filepath.Dir(filepath.Dir(p)))
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if d.Algorithm().FromBytes(b) != d {
			t.Errorf("stored blob %s does not match its digest", d)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("store holds no blob")
	}
	ents, _ := os.ReadDir(filepath.Join(root, "tmp"))
	if len(ents) != 0 {
		t.Errorf("%d temporary files left in the store", len(ents))
	}
}

// waitForBytes polls until some file under dir holds data: bounded in
// count, with no time threshold.
func waitForBytes(t *testing.T, dir string) {
	t.Helper()
	for range 4000 {
		found := false
		_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				if fi, err := e.Info(); err == nil && fi.Size() > 0 {
					found = true
				}
			}
			return nil
		})
		if found {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no data arrived under %s", dir)
}

// TestKillDuringUpload kills the registry process with SIGKILL while two
// uploads stream (a monolithic POST and a chunked PATCH), restarts it on
// the same root, and checks that the content stored before is intact, the
// half-sent blobs are not visible, and they can be pushed again.
func TestKillDuringUpload(t *testing.T) {
	root := t.TempDir()
	p := regtest.Serve(t, root, "")
	wasm, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := artifact.Build(wasm, artifact.Metadata{ABIMajor: 1, ABIMinor: -1}, time.Time{})
	c, err := client.New(regtest.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(context.Background(), p.Addr+"/plugins/virtual:v1", b); err != nil {
		t.Fatal(err)
	}

	big, bigDesc := randomBlob(t, 8<<20)
	big2, big2Desc := randomBlob(t, 8<<20)
	// Monolithic POST ?digest=: streams into tmp/.
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(big[:len(big)/2])
		// The rest never comes: the server dies first.
	}()
	go func() {
		req, _ := http.NewRequest("POST", "http://"+p.Addr+"/v2/big/one/blobs/uploads/?digest="+bigDesc.Digest.String(), pr)
		req.SetBasicAuth(regtest.User, regtest.Password)
		req.ContentLength = int64(len(big))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	// Chunked: a session, then a PATCH that streams into uploads/.
	resp, _ := do(t, "POST", "http://"+p.Addr+"/v2/big/two/blobs/uploads/", nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		t.Fatalf("start upload: %s", resp.Status)
	}
	pr2, pw2 := io.Pipe()
	go func() { _, _ = pw2.Write(big2[:len(big2)/2]) }()
	go func() {
		req, _ := http.NewRequest("PATCH", "http://"+p.Addr+loc, pr2)
		req.SetBasicAuth(regtest.User, regtest.Password)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitForBytes(t, filepath.Join(root, "tmp"))
	waitForBytes(t, filepath.Join(root, "uploads"))
	p.Kill()
	pw.Close()
	pw2.Close()

	p2 := regtest.Serve(t, root, "")
	checkStoreIntact(t, root)
	got, err := c.Pull(context.Background(), p2.Addr+"/plugins/virtual:v1")
	if err != nil || !bytes.Equal(got.Wasm, wasm) {
		t.Fatalf("pull after restart: %v", err)
	}
	for _, x := range []struct {
		name string
		desc ocispec.Descriptor
		data []byte
	}{{"big/one", bigDesc, big}, {"big/two", big2Desc, big2}} {
		r := repo(t, p2.Addr, x.name)
		if ok, err := r.Blobs().Exists(context.Background(), x.desc); err != nil || ok {
			t.Fatalf("%s: half-sent blob visible after restart (exists=%v, %v)", x.name, ok, err)
		}
		if err := r.Blobs().Push(context.Background(), x.desc, bytes.NewReader(x.data)); err != nil {
			t.Fatalf("%s: push again: %v", x.name, err)
		}
	}
	checkStoreIntact(t, root)
}

// TestStoreIsLocked refuses a second server on a root in use.
func TestStoreIsLocked(t *testing.T) {
	root := t.TempDir()
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := store.Open(root); err == nil {
		t.Fatal("second Open of the same root succeeded")
	}
}

func TestTagPaginationAndReferrers(t *testing.T) {
	r := regtest.Start(t, false)
	base := "http://" + r.Addr + "/v2/pag/repo"
	cfg := []byte("{}")
	do(t, "POST", base+"/blobs/uploads/?digest="+digest.FromBytes(cfg).String(), bytes.NewReader(cfg))
	man := func(extra string) []byte {
		return []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` +
			digest.FromBytes(cfg).String() + `","size":2},"layers":[]` + extra + `}`)
	}
	subject := man("")
	for _, tag := range []string{"c", "a", "e", "b", "d"} {
		resp, body := do(t, "PUT", base+"/manifests/"+tag, bytes.NewReader(subject), "Content-Type", ocispec.MediaTypeImageManifest)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("put %s: %s %s", tag, resp.Status, body)
		}
	}
	resp, body := do(t, "GET", base+"/tags/list?n=2", nil)
	if !strings.Contains(string(body), `"tags":["a","b"]`) || !strings.Contains(resp.Header.Get("Link"), "last=b") {
		t.Fatalf("page 1: %s link=%q", body, resp.Header.Get("Link"))
	}
	_, body = do(t, "GET", base+"/tags/list?n=2&last=b", nil)
	if !strings.Contains(string(body), `"tags":["c","d"]`) {
		t.Fatalf("page 2: %s", body)
	}
	_, body = do(t, "GET", base+"/tags/list?last=d", nil)
	if !strings.Contains(string(body), `"tags":["e"]`) {
		t.Fatalf("last page: %s", body)
	}

	sd := digest.FromBytes(subject)
	for i, at := range []string{"application/vnd.example.sig", "application/vnd.example.sbom"} {
		ref := man(fmt.Sprintf(`,"artifactType":%q,"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d},"annotations":{"n":"%d"}`, at, sd, len(subject), i))
		resp, body := do(t, "PUT", base+"/manifests/"+digest.FromBytes(ref).String(), bytes.NewReader(ref), "Content-Type", ocispec.MediaTypeImageManifest)
		if resp.StatusCode != http.StatusCreated || resp.Header.Get("OCI-Subject") != sd.String() {
			t.Fatalf("put referrer: %s %s", resp.Status, body)
		}
	}
	var idx ocispec.Index
	resp, body = do(t, "GET", base+"/referrers/"+sd.String()+"?artifactType=application/vnd.example.sbom", nil)
	if err := json.Unmarshal(body, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Annotations["n"] != "1" || resp.Header.Get("OCI-Filters-Applied") != "artifactType" {
		t.Fatalf("filtered referrers: %s", body)
	}
}

func TestNoCredentialsMeansReadOnly(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := server.New(server.Config{Store: st, AnonymousRead: true})
	for _, tc := range []struct {
		method string
		want   int
	}{{"GET", http.StatusOK}, {"POST", http.StatusForbidden}} {
		path := "/v2/"
		if tc.method == "POST" {
			path = "/v2/a/blobs/uploads/"
		}
		req, _ := http.NewRequest(tc.method, path, nil)
		rec := &recorder{h: http.Header{}}
		h.ServeHTTP(rec, req)
		if rec.code != tc.want {
			t.Fatalf("%s %s: %d, want %d", tc.method, path, rec.code, tc.want)
		}
	}
}

type recorder struct {
	h    http.Header
	code int
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return len(b), nil
}
func (r *recorder) WriteHeader(c int) { r.code = c }
