// Package k8stest runs a real etcd and kube-apiserver for tests, on free
// loopback ports, with the project's CRDs installed.
//
// Most tests share one cluster per test binary:
//
//	func TestMain(m *testing.M) { os.Exit(k8stest.Run(m)) }
//
//	func TestSomething(t *testing.T) {
//		env := k8stest.Shared(t)          // started on first use
//		cs := kubernetes.NewForConfigOrDie(env.Config())
//		ns := env.Namespace(t)            // a fresh namespace, deleted after the test
//		...
//	}
//
// The binaries are built by hack/k8s/ensure-k8s-bins.sh (make test runs it).
// When they are missing, Shared fails the test under CI=true and skips it
// elsewhere. Start gives full control for tests that need their own cluster.
package k8stest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/internal/testproc"
)

// ErrBinariesMissing is returned (wrapped) by Start when kube-apiserver or
// etcd cannot be found.
var ErrBinariesMissing = errors.New("kube-apiserver and etcd are not built; run hack/k8s/ensure-k8s-bins.sh (make test runs it)")

// User is an extra identity the API server accepts, for RBAC tests.
type User struct {
	// Name is the user name.
	Name string
	// Groups are the user's groups, such as "system:masters".
	Groups []string
}

// Options configures Start. The zero value is usable.
type Options struct {
	// BinDir holds kube-apiserver and etcd. When empty, Start uses
	// $WAPPER_K8S_BINS, then $KUBEBUILDER_ASSETS, then the cache of
	// hack/k8s/ensure-k8s-bins.sh.
	BinDir string
	// CRDs are installed, and waited for, before Start returns.
	CRDs []*apiextensionsv1.CustomResourceDefinition
	// Users are extra identities besides the admin; see Env.ConfigFor.
	Users []User
	// Logger receives progress messages (default slog.Default()).
	Logger *slog.Logger
	// StartTimeout guards against a hung start-up (default 3m). It is a
	// safety net, not a performance expectation.
	StartTimeout time.Duration
	// KeepDir keeps the run folder (logs, etcd data) after Stop. It is
	// also kept when $K8STEST_KEEP is set.
	KeepDir bool
}

// Env is a running etcd and kube-apiserver.
type Env struct {
	// Dir is the run folder: etcd data, certificates, logs, kubeconfig.
	Dir string
	// URL is the API server's address, https://127.0.0.1:PORT.
	URL string
	// Kubeconfig is the path of an admin kubeconfig file, for processes
	// under test (--kubeconfig).
	Kubeconfig string

	log     *slog.Logger
	caData  []byte
	tokens  map[string]string
	keep    bool
	procs   []*testproc.Proc
	stopped sync.Once
	stopErr error
}

// Config returns a fresh admin (system:masters) client config.
func (e *Env) Config() *rest.Config { return e.ConfigFor("admin") }

// ConfigFor returns a fresh client config for one of Options.Users (or
// "admin"). It panics on an unknown user, which is a bug in the test.
func (e *Env) ConfigFor(user string) *rest.Config {
	tok, ok := e.tokens[user]
	if !ok {
		panic(fmt.Sprintf("k8stest: no user %q; declare it in Options.Users", user))
	}
	return &rest.Config{
		Host:            e.URL,
		BearerToken:     tok,
		TLSClientConfig: rest.TLSClientConfig{CAData: bytes.Clone(e.caData)},
		QPS:             1000,
		Burst:           2000,
	}
}

// Logs returns the tail of the API server's and etcd's logs, for failure
// messages.
func (e *Env) Logs() string {
	var b strings.Builder
	for _, p := range e.procs {
		fmt.Fprintf(&b, "--- %s (last lines of %s)\n%s\n", p.Name, p.LogPath, p.Tail(40))
	}
	return b.String()
}

// Start starts etcd and kube-apiserver on free loopback ports, waits until
// the API server is ready and installs opts.CRDs. Call Stop when done.
func Start(ctx context.Context, opts Options) (env *Env, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	bins, err := findBinaries(opts.BinDir)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "k8stest-")
	if err != nil {
		return nil, fmt.Errorf("k8stest: make run folder: %w", err)
	}
	e := &Env{Dir: dir, log: log, tokens: map[string]string{}, keep: opts.KeepDir || os.Getenv("K8STEST_KEEP") != ""}
	defer func() {
		if err != nil {
			logs := e.Logs()
			e.keep = true
			_ = e.Stop()
			err = fmt.Errorf("%w\nrun folder kept: %s\n%s", err, dir, logs)
		}
	}()
	begin := time.Now()
	// A port picked free can be taken before the server binds it; try again
	// with new ports when that happens.
	for attempt := 1; ; attempt++ {
		err = e.start(ctx, bins, opts.Users)
		if err == nil || attempt == 3 || !strings.Contains(e.Logs(), "address already in use") {
			break
		}
		log.Warn("k8stest: a port was taken; retrying with new ports", "attempt", attempt)
		_ = e.stopProcs()
		e.procs = nil
	}
	if err != nil {
		return nil, err
	}
	log.Info("k8stest: kube-apiserver ready", "url", e.URL, "dir", dir, "startup", time.Since(begin).Round(time.Millisecond))
	if len(opts.CRDs) > 0 {
		if err := e.InstallCRDs(ctx, opts.CRDs...); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *Env) start(ctx context.Context, bins string, users []User) error {
	ports, err := testproc.FreePorts(3)
	if err != nil {
		return err
	}
	etcdPort, peerPort, apiPort := ports[0], ports[1], ports[2]
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	e.URL = "https://127.0.0.1:" + strconv.Itoa(apiPort)

	etcdData := filepath.Join(e.Dir, "etcd")
	_ = os.RemoveAll(etcdData)
	etcd, err := testproc.Start("etcd", filepath.Join(bins, "etcd"), filepath.Join(e.Dir, "etcd.log"), testproc.Options{},
		"--data-dir", etcdData, "--name", "k8stest",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "k8stest="+peerURL,
		"--unsafe-no-fsync", "--log-level", "warn")
	if err != nil {
		return err
	}
	e.procs = append(e.procs, etcd)

	if err := e.writeAuth(users); err != nil {
		return err
	}
	certDir := filepath.Join(e.Dir, "certs")
	_ = os.RemoveAll(certDir)
	api, err := testproc.Start("kube-apiserver", filepath.Join(bins, "kube-apiserver"), filepath.Join(e.Dir, "apiserver.log"), testproc.Options{},
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort),
		"--cert-dir="+certDir,
		"--etcd-servers="+etcdURL,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--service-account-issuer="+e.URL,
		"--service-account-key-file="+filepath.Join(e.Dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(e.Dir, "sa.key"),
		"--token-auth-file="+filepath.Join(e.Dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		// With --advertise-address=127.0.0.1, 1.37 also needs this.
		"--endpoint-reconciler-type=none")
	if err != nil {
		return err
	}
	e.procs = append(e.procs, api)
	return e.waitReady(ctx, filepath.Join(certDir, "apiserver.crt"))
}

// waitReady polls /readyz until it answers ok, a process exits, or ctx ends.
func (e *Env) waitReady(ctx context.Context, certFile string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, p := range e.procs {
			if ok, err := p.Exited(); ok {
				return fmt.Errorf("k8stest: %s exited during start-up: %v", p.Name, err)
			}
		}
		if ca, err := os.ReadFile(certFile); err == nil && len(ca) > 0 {
			e.caData = ca
			if e.ready(ctx) {
				return e.writeKubeconfig()
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("k8stest: kube-apiserver not ready: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func (e *Env) ready(ctx context.Context) bool {
	cfg := e.Config()
	cfg.Timeout = 5 * time.Second
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.URL+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok"
}

func (e *Env) writeAuth(users []User) error {
	keyPath := filepath.Join(e.Dir, "sa.key")
	if err := writeServiceAccountKey(keyPath, filepath.Join(e.Dir, "sa.pub")); err != nil {
		return err
	}
	var b strings.Builder
	all := append([]User{{Name: "admin", Groups: []string{"system:masters"}}}, users...)
	for _, u := range all {
		if _, dup := e.tokens[u.Name]; dup {
			return fmt.Errorf("k8stest: user %q declared twice (admin is built in)", u.Name)
		}
		tok := randomHex(16)
		e.tokens[u.Name] = tok
		fmt.Fprintf(&b, "%s,%s,%s-uid,\"%s\"\n", tok, u.Name, u.Name, strings.Join(u.Groups, ","))
	}
	return os.WriteFile(filepath.Join(e.Dir, "tokens.csv"), []byte(b.String()), 0o600)
}

func (e *Env) writeKubeconfig() error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["k8stest"] = &clientcmdapi.Cluster{Server: e.URL, CertificateAuthorityData: e.caData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: e.tokens["admin"]}
	cfg.Contexts["k8stest"] = &clientcmdapi.Context{Cluster: "k8stest", AuthInfo: "admin"}
	cfg.CurrentContext = "k8stest"
	e.Kubeconfig = filepath.Join(e.Dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, e.Kubeconfig); err != nil {
		return fmt.Errorf("k8stest: write kubeconfig: %w", err)
	}
	return nil
}

// Stop stops kube-apiserver, then etcd, and removes the run folder unless
// it is kept. It is safe to call more than once.
func (e *Env) Stop() error {
	e.stopped.Do(func() {
		e.stopErr = e.stopProcs()
		if e.keep {
			e.log.Info("k8stest: run folder kept", "dir", e.Dir)
		} else if err := os.RemoveAll(e.Dir); err != nil && e.stopErr == nil {
			e.stopErr = err
		}
	})
	return e.stopErr
}

func (e *Env) stopProcs() error {
	var errs []error
	for i := len(e.procs) - 1; i >= 0; i-- {
		if err := e.procs[i].Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// findBinaries returns the folder that holds kube-apiserver and etcd.
func findBinaries(dir string) (string, error) {
	var tried []string
	has := func(d string) bool {
		if d == "" {
			return false
		}
		tried = append(tried, d)
		for _, b := range []string{"kube-apiserver", "etcd"} {
			if st, err := os.Stat(filepath.Join(d, b)); err != nil || st.IsDir() {
				return false
			}
		}
		return true
	}
	for _, d := range []string{dir, os.Getenv("WAPPER_K8S_BINS"), os.Getenv("KUBEBUILDER_ASSETS")} {
		if has(d) {
			return d, nil
		}
	}
	script := filepath.Join(testenv.Root(), "hack", "k8s", "ensure-k8s-bins.sh")
	out, err := exec.Command(script, "--no-build").Output()
	if d := strings.TrimSpace(string(out)); err == nil && has(d) {
		return d, nil
	}
	return "", fmt.Errorf("k8stest: %w (looked in %s)", ErrBinariesMissing, strings.Join(append(tried, "the cache of "+script), ", "))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeServiceAccountKey(keyPath, pubPath string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("k8stest: service account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("k8stest: service account key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(pubPath, pubPEM, 0o600)
}
