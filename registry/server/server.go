// Package server is wapper's embedded OCI registry: an http.Handler that
// implements the OCI distribution-spec 1.1 (push, pull, content discovery
// with the referrers API, and content management) over a filesystem store.
//
// Pushes need a credential (HTTP basic auth checked by an auth.Checker).
// Reads need one too unless anonymous reads are allowed.
package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"wapper.dev/wapper/registry/auth"
	"wapper.dev/wapper/registry/store"
)

// DefaultMaxManifestSize is the largest manifest accepted, the size that the
// distribution-spec asks every registry to accept.
const DefaultMaxManifestSize = 4 << 20

// Config configures a Handler.
type Config struct {
	// Store holds the content. Required.
	Store *store.Store
	// Auth checks credentials. When nil, every push is refused.
	Auth auth.Checker
	// AnonymousRead lets requests without credentials pull.
	AnonymousRead bool
	// Logger receives request logs; nil means slog.Default().
	Logger *slog.Logger
	// MaxManifestSize overrides DefaultMaxManifestSize when positive.
	MaxManifestSize int64
}

// Handler serves the distribution API.
type Handler struct {
	cfg Config
	log *slog.Logger
}

// New returns a Handler for cfg.
func New(cfg Config) *Handler {
	if cfg.MaxManifestSize <= 0 {
		cfg.MaxManifestSize = DefaultMaxManifestSize
	}
	l := cfg.Logger
	if l == nil {
		l = slog.Default()
	}
	return &Handler{cfg: cfg, log: l}
}

// Error codes of the distribution-spec.
const (
	codeBlobUnknown         = "BLOB_UNKNOWN"
	codeBlobUploadInvalid   = "BLOB_UPLOAD_INVALID"
	codeBlobUploadUnknown   = "BLOB_UPLOAD_UNKNOWN"
	codeDigestInvalid       = "DIGEST_INVALID"
	codeManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
	codeManifestInvalid     = "MANIFEST_INVALID"
	codeManifestUnknown     = "MANIFEST_UNKNOWN"
	codeNameInvalid         = "NAME_INVALID"
	codeNameUnknown         = "NAME_UNKNOWN"
	codeSizeInvalid         = "SIZE_INVALID"
	codeUnauthorized        = "UNAUTHORIZED"
	codeDenied              = "DENIED"
	codeUnsupported         = "UNSUPPORTED"
	codeRangeInvalid        = "RANGE_INVALID"
)

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeErrors(w, status, []apiError{{Code: code, Message: msg}})
}

func writeErrors(w http.ResponseWriter, status int, errs []apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string][]apiError{"errors": errs})
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	w = sw
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	defer func() {
		h.log.Debug("registry request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "dur", time.Since(start))
	}()
	if !h.authorize(w, r) {
		return
	}
	p := r.URL.Path
	if p == "/v2" || p == "/v2/" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "method not allowed")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
		return
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		writeError(w, http.StatusNotFound, codeUnsupported, "not a distribution API path")
		return
	}
	seg := strings.Split(rest, "/")
	n := len(seg)
	route := func(k int) string { return strings.Join(seg[:n-k], "/") }
	switch {
	case n >= 3 && seg[n-2] == "tags" && seg[n-1] == "list":
		h.withName(w, route(2), func(name string) { h.tagsList(w, r, name) })
	case n >= 3 && seg[n-3] == "blobs" && seg[n-2] == "uploads":
		h.withName(w, route(3), func(name string) { h.upload(w, r, name, seg[n-1]) })
	case n >= 3 && seg[n-2] == "blobs":
		h.withName(w, route(2), func(name string) { h.blob(w, r, name, seg[n-1]) })
	case n >= 3 && seg[n-2] == "manifests":
		h.withName(w, route(2), func(name string) { h.manifest(w, r, name, seg[n-1]) })
	case n >= 3 && seg[n-2] == "referrers":
		h.withName(w, route(2), func(name string) { h.referrers(w, r, name, seg[n-1]) })
	default:
		writeError(w, http.StatusNotFound, codeUnsupported, "unknown distribution API path")
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (h *Handler) withName(w http.ResponseWriter, name string, fn func(string)) {
	if !store.ValidName(name) {
		writeError(w, http.StatusBadRequest, codeNameInvalid, fmt.Sprintf("invalid repository name %q", name))
		return
	}
	fn(name)
}

// authorize checks credentials; it writes the refusal and returns false
// when the request may not go on.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) bool {
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	user, pass, has := r.BasicAuth()
	if has && h.cfg.Auth != nil && h.cfg.Auth.Check(user, pass) {
		return true
	}
	if read && h.cfg.AnonymousRead && !has {
		return true
	}
	if h.cfg.Auth == nil && !read {
		writeError(w, http.StatusForbidden, codeDenied, "this registry has no credentials configured, so it refuses pushes; restart it with --htpasswd or --user")
		return false
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="wapper-registry"`)
	msg := "authentication required"
	if has {
		msg = "invalid user name or password"
	}
	writeError(w, http.StatusUnauthorized, codeUnauthorized, msg)
	return false
}

func (h *Handler) storeError(w http.ResponseWriter, err error, notFoundCode string) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, notFoundCode, err.Error())
	case errors.Is(err, store.ErrDigestMismatch), errors.Is(err, store.ErrBadDigest):
		writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error())
	default:
		h.log.Error("registry storage failure", "err", err)
		writeError(w, http.StatusInternalServerError, codeUnsupported, "storage failure; see the registry's log")
	}
}

// --- blobs ----------------------------------------------------------------

func (h *Handler) blob(w http.ResponseWriter, r *http.Request, name, ref string) {
	d, err := store.ParseDigest(ref)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error())
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if _, err := h.cfg.Store.StatBlob(name, d); err != nil {
			h.storeError(w, err, codeBlobUnknown)
			return
		}
		f, err := h.cfg.Store.OpenContent(d)
		if err != nil {
			h.storeError(w, err, codeBlobUnknown)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Docker-Content-Digest", d.String())
		w.Header().Set("Etag", `"`+d.String()+`"`)
		http.ServeContent(w, r, "", time.Time{}, f)
	case http.MethodDelete:
		if err := h.cfg.Store.DeleteBlob(name, d); err != nil {
			h.storeError(w, err, codeBlobUnknown)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	default:
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "method not allowed")
	}
}

func blobCreated(w http.ResponseWriter, name string, d digest.Digest) {
	w.Header().Set("Location", "/v2/"+name+"/blobs/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func uploadStatus(w http.ResponseWriter, name, id string, size int64, status int) {
	w.Header().Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
	w.Header().Set("Docker-Upload-UUID", id)
	end := size - 1
	if end < 0 {
		end = 0
	}
	w.Header().Set("Range", fmt.Sprintf("0-%d", end))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
}

func (h *Handler) upload(w http.ResponseWriter, r *http.Request, name, id string) {
	st := h.cfg.Store
	if id == "" {
		if r.Method != http.MethodPost {
			writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "method not allowed")
			return
		}
		h.startUpload(w, r, name)
		return
	}
	switch r.Method {
	case http.MethodGet:
		size, err := st.UploadSize(id)
		if err != nil {
			h.storeError(w, err, codeBlobUploadUnknown)
			return
		}
		uploadStatus(w, name, id, size, http.StatusNoContent)
	case http.MethodPatch:
		if size, ok := h.appendChunk(w, r, name, id); ok {
			uploadStatus(w, name, id, size, http.StatusAccepted)
		}
	case http.MethodPut:
		d, err := store.ParseDigest(r.URL.Query().Get("digest"))
		if err != nil {
			writeError(w, http.StatusBadRequest, codeDigestInvalid, "PUT needs a ?digest= parameter: "+err.Error())
			return
		}
		if r.ContentLength != 0 || r.Header.Get("Content-Range") != "" {
			if _, ok := h.appendChunk(w, r, name, id); !ok {
				return
			}
		}
		if _, err := st.FinishUpload(name, id, d); err != nil {
			h.storeError(w, err, codeBlobUploadUnknown)
			return
		}
		blobCreated(w, name, d)
	case http.MethodDelete:
		if err := st.CancelUpload(id); err != nil {
			h.storeError(w, err, codeBlobUploadUnknown)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "method not allowed")
	}
}

// appendChunk appends the request body to upload id, checking its
// Content-Range. It returns the new size, or false after writing the
// error response.
func (h *Handler) appendChunk(w http.ResponseWriter, r *http.Request, name, id string) (int64, bool) {
	start, ok := h.contentRange(w, r)
	if !ok {
		return 0, false
	}
	size, err := h.cfg.Store.AppendUpload(id, start, r.Body)
	if errors.Is(err, store.ErrRange) {
		uploadStatus(w, name, id, size, http.StatusRequestedRangeNotSatisfiable)
		return size, false
	}
	if err != nil {
		h.storeError(w, err, codeBlobUploadUnknown)
		return size, false
	}
	return size, true
}

// contentRange parses an optional Content-Range "start-end" header. It
// returns -1 when there is none.
func (h *Handler) contentRange(w http.ResponseWriter, r *http.Request) (int64, bool) {
	cr := r.Header.Get("Content-Range")
	if cr == "" {
		return -1, true
	}
	cr = strings.TrimPrefix(cr, "bytes ")
	a, b, ok := strings.Cut(cr, "-")
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || start < 0 || end < start {
		writeError(w, http.StatusRequestedRangeNotSatisfiable, codeRangeInvalid, "malformed Content-Range; want start-end")
		return 0, false
	}
	if r.ContentLength >= 0 && r.ContentLength != end-start+1 {
		writeError(w, http.StatusBadRequest, codeSizeInvalid, "Content-Range and Content-Length disagree")
		return 0, false
	}
	return start, true
}

func (h *Handler) startUpload(w http.ResponseWriter, r *http.Request, name string) {
	st := h.cfg.Store
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		d, err := store.ParseDigest(m)
		if err != nil {
			writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error())
			return
		}
		from := q.Get("from")
		mountable := false
		if from != "" {
			_, err := st.StatBlob(from, d)
			mountable = store.ValidName(from) && err == nil
		} else {
			_, mountable = st.HasContent(d)
		}
		if mountable && st.LinkBlob(name, d) == nil {
			blobCreated(w, name, d)
			return
		}
		// Not mountable: fall back to a new upload session, as the spec says.
	}
	if ds := q.Get("digest"); ds != "" {
		d, err := store.ParseDigest(ds)
		if err != nil {
			writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error())
			return
		}
		if _, err := st.PutBlob(name, d, r.Body); err != nil {
			h.storeError(w, err, codeBlobUploadInvalid)
			return
		}
		blobCreated(w, name, d)
		return
	}
	id, err := st.NewUpload()
	if err != nil {
		h.storeError(w, err, codeBlobUploadInvalid)
		return
	}
	uploadStatus(w, name, id, 0, http.StatusAccepted)
}

// --- manifests ------------------------------------------------------------

// manifestFields are the parts of a manifest or index the registry reads.
type manifestFields struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	Annotations   map[string]string    `json:"annotations"`
}

// Docker media types the registry knows beside the OCI ones.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// externalLayer reports whether desc is a non-distributable layer that
// names where it is kept: such a layer is not pushed to the registry, so
// its absence is no error (as in the distribution reference registry).
func externalLayer(desc ocispec.Descriptor) bool {
	if len(desc.URLs) == 0 {
		return false
	}
	switch desc.MediaType {
	case ocispec.MediaTypeImageLayerNonDistributable, //nolint:staticcheck // deprecated, still pushed by older tools
		ocispec.MediaTypeImageLayerNonDistributableGzip, //nolint:staticcheck // idem
		ocispec.MediaTypeImageLayerNonDistributableZstd, //nolint:staticcheck // idem
		mediaTypeDockerForeignLayer:
		return true
	}
	return false
}

// maxMissingReported bounds the errors a refused manifest push answers
// with, so that a manifest naming thousands of missing blobs costs neither
// thousands of lookups nor a response larger than itself.
const maxMissingReported = 100

// checkReferences makes sure that repository name holds everything a
// manifest of media type mt names: the config and layers of an image
// manifest (as blobs), the manifests of an image index. The subject is
// not checked: the referrers API lets a referrer be pushed before its
// subject. Other media types are not checked. It writes the error
// response (400 MANIFEST_BLOB_UNKNOWN for each missing digest, as the
// distribution-spec asks, up to maxMissingReported of them) and returns
// false when something is missing.
func (h *Handler) checkReferences(w http.ResponseWriter, name, mt string, m *manifestFields) bool {
	type ref struct {
		field    string
		desc     ocispec.Descriptor
		manifest bool // must be a manifest of the repository, not a blob
	}
	var refs []ref
	switch mt {
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
		if m.Config == nil {
			writeError(w, http.StatusBadRequest, codeManifestInvalid, "image manifest has no config")
			return false
		}
		refs = append(refs, ref{field: "config", desc: *m.Config})
		for i, l := range m.Layers {
			if !externalLayer(l) {
				refs = append(refs, ref{field: fmt.Sprintf("layers[%d]", i), desc: l})
			}
		}
	case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
		for i, c := range m.Manifests {
			refs = append(refs, ref{field: fmt.Sprintf("manifests[%d]", i), desc: c, manifest: true})
		}
	}
	var missing []apiError
	seen := make(map[digest.Digest]bool, len(refs))
	for _, r := range refs {
		if len(missing) == maxMissingReported {
			break
		}
		d, err := store.ParseDigest(r.desc.Digest.String())
		if err != nil {
			writeError(w, http.StatusBadRequest, codeManifestInvalid, r.field+": "+err.Error())
			return false
		}
		if seen[d] {
			continue
		}
		seen[d] = true
		what := "manifest"
		if !r.manifest {
			// A layer may itself be a manifest (nested artifacts), as
			// the reference registry allows.
			if _, err := h.cfg.Store.StatBlob(name, d); err == nil {
				continue
			}
			what = "blob"
		}
		if h.cfg.Store.HasManifest(name, d) {
			continue
		}
		missing = append(missing, apiError{
			Code:    codeManifestBlobUnknown,
			Message: fmt.Sprintf("%s names %s %s, which repository %s does not hold; push it first", r.field, what, d, name),
			Detail:  d.String(),
		})
	}
	if len(missing) > 0 {
		writeErrors(w, http.StatusBadRequest, missing)
		return false
	}
	return true
}

func isDigest(ref string) bool { return strings.Contains(ref, ":") }

func (h *Handler) resolve(w http.ResponseWriter, name, ref string) (digest.Digest, bool) {
	if isDigest(ref) {
		d, err := store.ParseDigest(ref)
		if err != nil {
			writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error())
			return "", false
		}
		return d, true
	}
	if !store.ValidTag(ref) {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, fmt.Sprintf("invalid tag %q", ref))
		return "", false
	}
	d, err := h.cfg.Store.Resolve(name, ref)
	if err != nil {
		writeError(w, http.StatusNotFound, codeManifestUnknown, fmt.Sprintf("tag %q not found in %s", ref, name))
		return "", false
	}
	return d, true
}

func (h *Handler) manifest(w http.ResponseWriter, r *http.Request, name, ref string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		d, ok := h.resolve(w, name, ref)
		if !ok {
			return
		}
		body, mt, err := h.cfg.Store.GetManifest(name, d)
		if err != nil {
			h.storeError(w, err, codeManifestUnknown)
			return
		}
		w.Header().Set("Content-Type", mt)
		w.Header().Set("Docker-Content-Digest", d.String())
		w.Header().Set("Etag", `"`+d.String()+`"`)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	case http.MethodPut:
		h.putManifest(w, r, name, ref)
	case http.MethodDelete:
		if !isDigest(ref) {
			if !store.ValidTag(ref) {
				writeError(w, http.StatusBadRequest, codeManifestInvalid, fmt.Sprintf("invalid tag %q", ref))
				return
			}
			if err := h.cfg.Store.DeleteTag(name, ref); err != nil {
				h.storeError(w, err, codeManifestUnknown)
				return
			}
			w.WriteHeader(http.StatusAccepted)
			return
		}
		d, ok := h.resolve(w, name, ref)
		if !ok {
			return
		}
		body, _, err := h.cfg.Store.GetManifest(name, d)
		if err != nil {
			h.storeError(w, err, codeManifestUnknown)
			return
		}
		var m manifestFields
		_ = json.Unmarshal(body, &m)
		var subject digest.Digest
		if m.Subject != nil {
			// Stores written before subjects were checked on push may
			// hold a malformed one: such a manifest has no referrer entry.
			subject, _ = store.ParseDigest(m.Subject.Digest.String())
		}
		if err := h.cfg.Store.DeleteManifest(name, d, subject); err != nil {
			h.storeError(w, err, codeManifestUnknown)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	default:
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "method not allowed")
	}
}

func (h *Handler) putManifest(w http.ResponseWriter, r *http.Request, name, ref string) {
	limit := h.cfg.MaxManifestSize
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, "reading manifest: "+err.Error())
		return
	}
	if int64(len(body)) > limit {
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("manifest larger than %d bytes", limit))
		return
	}
	ct := r.Header.Get("Content-Type")
	var m manifestFields
	if err := json.Unmarshal(body, &m); err != nil {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, "manifest does not parse: "+err.Error())
		return
	}
	if ct == "" {
		ct = m.MediaType
	}
	if ct == "" {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, "manifest has no media type: set Content-Type")
		return
	}
	if m.MediaType != "" && m.MediaType != ct {
		writeError(w, http.StatusBadRequest, codeManifestInvalid,
			fmt.Sprintf("manifest mediaType %q differs from Content-Type %q", m.MediaType, ct))
		return
	}
	var d digest.Digest
	var tags []string
	if isDigest(ref) {
		d, err = store.ParseDigest(ref)
		if err != nil {
			writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error())
			return
		}
		if got := d.Algorithm().FromBytes(body); got != d {
			writeError(w, http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("manifest digest is %s, not %s", got, d))
			return
		}
	} else {
		if !store.ValidTag(ref) {
			writeError(w, http.StatusBadRequest, codeManifestInvalid, fmt.Sprintf("invalid tag %q", ref))
			return
		}
		d = digest.FromBytes(body)
		tags = append(tags, ref)
	}
	for _, t := range r.URL.Query()["tag"] {
		if !store.ValidTag(t) {
			writeError(w, http.StatusBadRequest, codeManifestInvalid, fmt.Sprintf("invalid tag %q", t))
			return
		}
		tags = append(tags, t)
	}
	if m.Subject != nil {
		if _, err := store.ParseDigest(m.Subject.Digest.String()); err != nil {
			writeError(w, http.StatusBadRequest, codeManifestInvalid, "subject: "+err.Error())
			return
		}
	}
	if !h.checkReferences(w, name, ct, &m) {
		return
	}
	if err := h.cfg.Store.PutManifest(name, d, ct, body, tags); err != nil {
		h.storeError(w, err, codeManifestInvalid)
		return
	}
	if m.Subject != nil {
		at := m.ArtifactType
		if at == "" && m.Config != nil {
			at = m.Config.MediaType
		}
		desc := store.Referrer{MediaType: ct, Digest: d, Size: int64(len(body)), ArtifactType: at, Annotations: m.Annotations}
		raw, _ := json.Marshal(desc)
		if err := h.cfg.Store.AddReferrer(name, m.Subject.Digest, desc, raw); err != nil {
			h.storeError(w, err, codeManifestInvalid)
			return
		}
		w.Header().Set("OCI-Subject", m.Subject.Digest.String())
	}
	for _, t := range r.URL.Query()["tag"] {
		w.Header().Add("OCI-Tag", t)
	}
	w.Header().Set("Location", "/v2/"+name+"/manifests/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// --- discovery ------------------------------------------------------------

func (h *Handler) tagsList(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "method not allowed")
		return
	}
	if !h.cfg.Store.RepoExists(name) {
		writeError(w, http.StatusNotFound, codeNameUnknown, fmt.Sprintf("repository %s not found", name))
		return
	}
	tags, err := h.cfg.Store.Tags(name)
	if err != nil {
		h.storeError(w, err, codeNameUnknown)
		return
	}
	q := r.URL.Query()
	if last := q.Get("last"); last != "" {
		i := 0
		for i < len(tags) && tags[i] <= last {
			i++
		}
		tags = tags[i:]
	}
	if ns := q.Get("n"); ns != "" {
		n, err := strconv.Atoi(ns)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, codeUnsupported, "n must be a non-negative integer")
			return
		}
		if n < len(tags) {
			tags = tags[:n]
			if n > 0 {
				next := url.Values{"n": {ns}, "last": {tags[n-1]}}
				w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, name, next.Encode()))
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{name, tags})
}

func (h *Handler) referrers(w http.ResponseWriter, r *http.Request, name, ref string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "method not allowed")
		return
	}
	subject, err := store.ParseDigest(ref)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error())
		return
	}
	raws, err := h.cfg.Store.Referrers(name, subject)
	if err != nil {
		h.storeError(w, err, codeNameUnknown)
		return
	}
	filter := r.URL.Query().Get("artifactType")
	list := []json.RawMessage{}
	for _, raw := range raws {
		if filter != "" {
			var ref store.Referrer
			if json.Unmarshal(raw, &ref) != nil || ref.ArtifactType != filter {
				continue
			}
		}
		list = append(list, raw)
	}
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
	_ = json.NewEncoder(w).Encode(struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     []json.RawMessage `json:"manifests"`
	}{2, ocispec.MediaTypeImageIndex, list})
}
