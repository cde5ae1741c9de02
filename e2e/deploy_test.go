package e2e

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	kubeedge "github.com/kubeedge/api/client/clientset/versioned"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"wapper.dev/wapper/deploy/kustomize"
	"wapper.dev/wapper/host/cloudlink"
	"wapper.dev/wapper/host/dmi/dmitest"
	"wapper.dev/wapper/host/mqtt"
	"wapper.dev/wapper/internal/hostproc"
	"wapper.dev/wapper/internal/k8stest"
	"wapper.dev/wapper/internal/testenv"
)

// warnings collects the API server's warnings (Pod Security's among them).
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// kustomized renders a base of deploy/kustomize.
func kustomized(t *testing.T, base string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := kustomize.Objects(base)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func ofKind(objs []*unstructured.Unstructured, kinds ...string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if slices.Contains(kinds, o.GetKind()) {
			out = append(out, o)
		}
	}
	return out
}

// TestDeployKustomize renders deploy/kustomize's bases and applies them to
// a real kube-apiserver (RBAC authorizer, Pod Security admission): the
// CRDs and namespaces for real, every object with a server-side dry run
// (server-side apply, as kubectl apply --server-side --dry-run=server),
// and the pods of the Deployment and the DaemonSet, dry run too, against
// their namespaces' Pod Security level. Then it creates wapper-cloud's
// RBAC for real and checks with SubjectAccessReviews each verb wapper-cloud
// needs and a list of what it must not do; and runs bin/wapper-cloud with
// the Deployment's arguments under the ServiceAccount's own token, with a
// wapper-host connected: it must become ready, deliver a device and write
// its DeviceStatus and the MapperPlugin's status, with no request refused.
func TestDeployKustomize(t *testing.T) {
	cloud, host, keCRDs := kustomized(t, kustomize.Cloud), kustomized(t, kustomize.Host), kustomized(t, kustomize.KubeEdgeCRDs)
	ctx := context.Background()
	env, err := k8stest.Start(ctx, k8stest.Options{})
	if err != nil {
		if errors.Is(err, k8stest.ErrBinariesMissing) {
			testenv.Missing(t, "a kube-apiserver and etcd build", "run hack/k8s/ensure-k8s-bins.sh (make test runs it)")
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	warn := &warnings{}
	cfg := env.Config()
	cfg.WarningHandler = warn
	cs := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)

	// The CRDs, for real: the rendered ones, not deploy/crds'.
	var crdList []*apiextensionsv1.CustomResourceDefinition
	for _, o := range ofKind(append(slices.Clone(cloud), keCRDs...), "CustomResourceDefinition") {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, crd, true); err != nil {
			t.Fatal(err)
		}
		crdList = append(crdList, crd)
	}
	if len(crdList) != 4 {
		t.Fatalf("%d CRDs rendered, want 4", len(crdList))
	}
	if err := env.InstallCRDs(ctx, crdList...); err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cfg)))
	apply := func(o *unstructured.Unstructured, dryRun bool) error {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return err
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			if o.GetNamespace() == "" {
				return fmt.Errorf("%s %s has no namespace: it would land in the applier's", gvk.Kind, o.GetName())
			}
			ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		b, err := json.Marshal(o.Object)
		if err != nil {
			return err
		}
		po := metav1.PatchOptions{FieldManager: "deploy-test", Force: new(true)}
		if dryRun {
			po.DryRun = []string{metav1.DryRunAll}
		}
		_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, b, po)
		return err
	}
	for _, o := range ofKind(append(slices.Clone(cloud), host...), "Namespace") {
		if err := apply(o, false); err != nil {
			t.Fatalf("Namespace %s: %v", o.GetName(), err)
		}
	}

	// Every object, dry run. The cloud's raise no warning: its namespace
	// warns at Pod Security level "restricted".
	for base, objs := range map[string][]*unstructured.Unstructured{"cloud": cloud, "host": host, "kubeedge-crds": keCRDs} {
		for _, o := range objs {
			if err := apply(o, true); err != nil {
				t.Errorf("%s: dry-run apply %s %s: %v", base, o.GetKind(), o.GetName(), err)
			}
			w := warn.take()
			switch {
			case base == "host" && o.GetKind() == "DaemonSet":
				// wapper-edge warns at "baseline": host namespaces and paths.
				for _, s := range w {
					if !strings.Contains(s, "hostNetwork") && !strings.Contains(s, "hostPath") && !strings.Contains(s, "hostPort") {
						t.Errorf("DaemonSet warning beyond host network and paths: %s", s)
					}
				}
				t.Logf("DaemonSet warnings (expected: wapper-edge is privileged): %q", w)
			case len(w) > 0:
				t.Errorf("%s: %s %s: warnings %q", base, o.GetKind(), o.GetName(), w)
			}
		}
	}

	// The pods themselves, dry run, against their namespaces' enforced
	// Pod Security level: restricted for wapper-cloud.
	dep := &appsv1.Deployment{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(ofKind(cloud, "Deployment")[0].Object, dep, true); err != nil {
		t.Fatal(err)
	}
	ds := &appsv1.DaemonSet{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(ofKind(host, "DaemonSet")[0].Object, ds, true); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "wapper-cloud-x", Namespace: dep.Namespace, Labels: dep.Spec.Template.Labels}, Spec: dep.Spec.Template.Spec},
		{ObjectMeta: metav1.ObjectMeta{Name: "wapper-host-x", Namespace: ds.Namespace, Labels: ds.Spec.Template.Labels}, Spec: ds.Spec.Template.Spec},
	} {
		if _, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Errorf("pod of %s: %v", p.Namespace, err)
		}
		if w := warn.take(); p.Namespace == dep.Namespace && len(w) > 0 {
			t.Errorf("wapper-cloud pod: warnings %q", w)
		}
	}
	// The same wapper-cloud pod as root would be refused there.
	root := dep.Spec.Template.Spec.DeepCopy()
	root.SecurityContext.RunAsUser, root.SecurityContext.RunAsNonRoot = new(int64(0)), nil
	if _, err := cs.CoreV1().Pods(dep.Namespace).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "root"}, Spec: *root},
		metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil || !strings.Contains(err.Error(), "restricted") {
		t.Errorf("a root pod in %s: %v, want refused by Pod Security (restricted)", dep.Namespace, err)
	}

	// wapper-cloud's ServiceAccount and RBAC, for real.
	for _, o := range ofKind(cloud, "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding") {
		if err := apply(o, false); err != nil {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	checkCloudRBAC(t, cs, dep.Namespace, dep.Spec.Template.Spec.ServiceAccountName)
	if t.Failed() {
		return
	}
	runCloudAsServiceAccount(t, env, cs, dep)
}

// access is one SubjectAccessReview: verb on group/resource[/sub] in a
// namespace ("" for cluster-wide).
type access struct {
	verb, group, resource, sub, ns string
}

func (a access) String() string {
	r := a.resource
	if a.sub != "" {
		r += "/" + a.sub
	}
	if a.group != "" {
		r += "." + a.group
	}
	where := "cluster-wide"
	if a.ns != "" {
		where = "in " + a.ns
	}
	return a.verb + " " + r + " " + where
}

func checkCloudRBAC(t *testing.T, cs kubernetes.Interface, ns, sa string) {
	t.Helper()
	user := "system:serviceaccount:" + ns + ":" + sa
	const ke, wm = "devices.kubeedge.io", "mappers.wapper.dev"
	const pluginNS, devNS = "wapper-plugin-secrets", "plant"
	var allowed, denied []access
	for _, v := range []string{"list", "watch", "patch"} {
		allowed = append(allowed, access{v, ke, "devices", "", ""}, access{v, ke, "devices", "", devNS})
	}
	for _, v := range []string{"list", "watch"} {
		allowed = append(allowed, access{v, ke, "devicemodels", "", ""}, access{v, "", "nodes", "", ""},
			access{v, "", "secrets", "", pluginNS})
	}
	for _, v := range []string{"create", "patch"} {
		allowed = append(allowed, access{v, ke, "devicestatuses", "", devNS})
	}
	for _, v := range []string{"get", "list", "watch"} {
		allowed = append(allowed, access{v, wm, "mapperplugins", "", ""})
	}
	allowed = append(allowed, access{"update", wm, "mapperplugins", "status", ""},
		access{"create", "authentication.k8s.io", "tokenreviews", "", ""}, access{"create", "authorization.k8s.io", "subjectaccessreviews", "", ""})
	for _, v := range []string{"get", "list", "watch", "create"} {
		allowed = append(allowed, access{v, "", "secrets", "", ns})
	}
	for _, v := range []string{"get", "list", "create", "update", "delete"} {
		allowed = append(allowed, access{v, "coordination.k8s.io", "leases", "", ns})
	}
	denied = []access{
		{"list", "", "secrets", "", ""}, {"get", "", "secrets", "", "kube-system"}, {"list", "", "secrets", "", devNS},
		{"update", "", "secrets", "", ns}, {"delete", "", "secrets", "", ns}, {"patch", "", "secrets", "", ns},
		{"create", "", "secrets", "", pluginNS}, {"update", "", "secrets", "", pluginNS}, {"delete", "", "secrets", "", pluginNS},
		{"delete", "", "nodes", "", ""}, {"patch", "", "nodes", "", ""}, {"update", "", "nodes", "", ""}, {"create", "", "nodes", "", ""},
		{"create", "", "pods", "", ns}, {"create", "", "pods", "exec", ns}, {"get", "", "configmaps", "", ns},
		{"create", "", "serviceaccounts", "token", ns}, {"create", "", "namespaces", "", ""},
		{"create", ke, "devices", "", devNS}, {"update", ke, "devices", "", devNS}, {"delete", ke, "devices", "", devNS},
		{"patch", ke, "devicemodels", "", devNS}, {"delete", ke, "devicestatuses", "", devNS}, {"update", ke, "devicestatuses", "", devNS},
		{"create", wm, "mapperplugins", "", ""}, {"update", wm, "mapperplugins", "", ""}, {"patch", wm, "mapperplugins", "", ""},
		{"delete", wm, "mapperplugins", "", ""},
		{"update", "apiextensions.k8s.io", "customresourcedefinitions", "", ""},
		{"escalate", "rbac.authorization.k8s.io", "clusterroles", "", ""}, {"bind", "rbac.authorization.k8s.io", "clusterroles", "", ""},
		{"create", "rbac.authorization.k8s.io", "rolebindings", "", ns},
		{"update", "coordination.k8s.io", "leases", "", "kube-node-lease"}, {"delete", "coordination.k8s.io", "leases", "", "kube-node-lease"},
		{"watch", "coordination.k8s.io", "leases", "", ns}, {"list", "coordination.k8s.io", "leases", "", "kube-node-lease"},
		{"impersonate", "", "serviceaccounts", "", ""}, {"impersonate", "", "users", "", ""},
	}
	check := func(a access, want bool) {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   user,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.sub, Namespace: a.ns,
			},
		}}
		got, err := cs.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Allowed != want {
			t.Errorf("%s may %s: %v, want %v (%s)", user, a, got.Status.Allowed, want, got.Status.Reason)
		}
	}
	for _, a := range allowed {
		check(a, true)
	}
	for _, a := range denied {
		check(a, false)
	}
	t.Logf("RBAC: %s may do the %d things wapper-cloud does and none of %d others", user, len(allowed), len(denied))
}

// containerArg replaces (or adds) --name=value in args.
func containerArg(args []string, name, value string) []string {
	out := slices.DeleteFunc(slices.Clone(args), func(a string) bool { return strings.HasPrefix(a, "--"+name+"=") })
	return append(out, "--"+name+"="+value)
}

func argValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// runCloudAsServiceAccount runs bin/wapper-cloud as the Deployment would:
// its arguments, the ServiceAccount's token.
func runCloudAsServiceAccount(t *testing.T, env *k8stest.Env, cs kubernetes.Interface, dep *appsv1.Deployment) {
	ctx := context.Background()
	ns := dep.Namespace
	spec := dep.Spec.Template.Spec
	tok, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, spec.ServiceAccountName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	admin := env.Config()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["k8stest"] = &clientcmdapi.Cluster{Server: admin.Host, CertificateAuthorityData: admin.CAData}
	kc.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	kc.Contexts["sa"] = &clientcmdapi.Context{Cluster: "k8stest", AuthInfo: "sa"}
	kc.CurrentContext = "sa"
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}

	const devNS = "plant"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: devNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c := &cloudEnv{t: t, env: env, ns: devNS, ke: kubeedge.NewForConfigOrDie(admin)}
	c.addr = saPort(t)
	c.url = "https://" + c.addr
	c.ca = filepath.Join(t.TempDir(), "ca.crt")

	// The Deployment's arguments, with this machine's port and folders;
	// the probes must ask the port it listens on.
	ctr := spec.Containers[0]
	if argValue(ctr.Args, "listen") != fmt.Sprintf(":%d", ctr.Ports[0].ContainerPort) ||
		ctr.ReadinessProbe.HTTPGet.Port.StrVal != ctr.Ports[0].Name || ctr.LivenessProbe.HTTPGet.Port.StrVal != ctr.Ports[0].Name {
		t.Fatalf("the probes and --listen do not agree on the link port: %q %+v", ctr.Args, ctr.Ports)
	}
	args := containerArg(ctr.Args, "listen", c.addr)
	args = containerArg(args, "module-cache", filepath.Join(t.TempDir(), "modules"))
	// The generated certificate's names: the Service's, and here loopback.
	svcNames := strings.Split(argValue(ctr.Args, "tls-hosts"), ",")
	args = containerArg(args, "tls-hosts", argValue(ctr.Args, "tls-hosts")+",127.0.0.1")
	args = append(args, "--kubeconfig", kubeconfig, "--ca-out", c.ca, "--status-flush", "100ms", "--log-level", "debug")
	c.cmd = exec.Command(testenv.Artifact(t, "wapper-cloud"), args...)
	c.cmd.Stdout, c.cmd.Stderr = c, c
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.done = make(chan struct{})
	done := c.done
	go func() { _ = c.cmd.Wait(); close(done) }()
	t.Cleanup(c.kill9)
	t.Cleanup(func() {
		if t.Failed() {
			c.logMu.Lock()
			t.Logf("wapper-cloud's log:\n%s", c.log.String())
			c.logMu.Unlock()
		}
	})
	saEventually(t, "wapper-cloud (as its ServiceAccount) ready: every informer synced", 2*time.Minute, func() error {
		select {
		case <-done:
			t.Fatalf("wapper-cloud exited")
		default:
		}
		tlsCfg, err := cloudlink.LoadCA(c.ca)
		if err != nil {
			return err
		}
		resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 5 * time.Second}).Get(c.url + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
	// It generated its certificate into the Secret the Deployment names,
	// for the Service's names.
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, argValue(ctr.Args, "tls-secret"), metav1.GetOptions{})
	if err != nil || sec.Type != corev1.SecretTypeTLS {
		t.Fatalf("TLS Secret: %v", err)
	}
	block, _ := pem.Decode(sec.Data[corev1.TLSCertKey])
	if block == nil {
		t.Fatal("TLS Secret: no certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range svcNames {
		if err := cert.VerifyHostname(n); err != nil {
			t.Errorf("generated certificate: %v", err)
		}
	}

	// A node token, made by the admin, and a host.
	out, err := exec.Command(testenv.Artifact(t, "wapper-cloud"), "token", "--kubeconfig", env.Kubeconfig, "--namespace", ns, "edge-1").Output()
	if err != nil {
		t.Fatalf("wapper-cloud token: %v", err)
	}
	tokFile := filepath.Join(t.TempDir(), "edge-1.token")
	if err := os.WriteFile(tokFile, out, 0o600); err != nil {
		t.Fatal(err)
	}
	h := saStart(t, t.TempDir(), "--cloud", c.url, "--node", "edge-1", "--token-file", tokFile, "--ca-file", c.ca)
	if err := env.Apply(ctx, devNS, cloudPlugins+"\n---\n"+cloudDevice("d1", "edge-1", "20", "thermo")); err != nil {
		t.Fatal(err)
	}
	running(t, h, devNS, "d1")
	reportedInCluster(t, c, "d1", "setpoint", "20") // DeviceStatus: create, then patch
	dyn := dynamic.NewForConfigOrDie(admin)
	saEventually(t, "MapperPlugin virtual: edge-1 Loaded in status", 2*time.Minute, func() error {
		u, err := dyn.Resource(schema.GroupVersionResource{Group: "mappers.wapper.dev", Version: "v1alpha1", Resource: "mapperplugins"}).
			Get(ctx, "virtual", metav1.GetOptions{})
		if err != nil {
			return err
		}
		nodes, _, _ := unstructured.NestedSlice(u.Object, "status", "nodes")
		for _, n := range nodes {
			if m, ok := n.(map[string]any); ok && m["node"] == "edge-1" && m["phase"] == "Loaded" {
				return nil
			}
		}
		return fmt.Errorf("status.nodes %v", nodes)
	})
	c.logMu.Lock()
	logs := c.log.String()
	c.logMu.Unlock()
	if strings.Contains(logs, "forbidden") {
		t.Errorf("wapper-cloud was refused something under its ServiceAccount:\n%s", logs)
	}
}

// TestDeployHostDaemonSet runs bin/wapper-host with the arguments of
// deploy/kustomize/host's DaemonSet, each volume's mount path mapped to a
// folder here as the node's host paths would be, beside a stand-in
// edgecore (KubeEdge's DMI stubs) and an MQTT broker in the place of
// edgecore's: it registers its plugin's protocol over DMI with the socket
// path it serves, connects to the broker, and answers the probes.
func TestDeployHostDaemonSet(t *testing.T) {
	ds := &appsv1.DaemonSet{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(ofKind(kustomized(t, kustomize.Host), "DaemonSet")[0].Object, ds, true); err != nil {
		t.Fatal(err)
	}
	spec := ds.Spec.Template.Spec
	ctr := spec.Containers[0]
	// Each mount path becomes a folder here (short: unix socket paths).
	root := dmiDir(t)
	mounts := map[string]string{}
	for i, m := range ctr.VolumeMounts {
		mounts[m.MountPath] = filepath.Join(root, fmt.Sprint(i))
		if err := os.MkdirAll(mounts[m.MountPath], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	local := func(p string) string {
		for mp, dir := range mounts {
			if rest, ok := strings.CutPrefix(p, mp); ok && (rest == "" || rest[0] == '/') {
				return dir + rest
			}
		}
		t.Fatalf("%s is on no volume of the DaemonSet: the read-only root file system would refuse it", p)
		return ""
	}
	ecSock := local(argValue(ctr.Args, "edgecore-socket"))
	hostSock := local(argValue(ctr.Args, "dmi-socket"))
	ec := dmitest.Start(t, ecSock)

	broker, err := mqtt.Serve(mqtt.BrokerOptions{Addr: saPort(t), Logger: slog.New(slog.NewTextHandler(testenv.LogWriter(t), nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = broker.Close() })
	if argValue(ctr.Args, "mqtt-broker") != "tcp://127.0.0.1:1883" {
		t.Fatalf("--mqtt-broker %q: not edgecore's default broker", argValue(ctr.Args, "mqtt-broker"))
	}
	// The plugin, where the node keeps plugins, and a MapperPlugin for it
	// in the ConfigMap's folder.
	plugins := local(argValue(ctr.Args, "plugin-dir"))
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plugins, "virtual.wasm"), must(os.ReadFile(testenv.Plugin(t, "virtual"))), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(local(argValue(ctr.Args, "manifests")), "virtual.yaml"), []byte(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: virtual}
spec:
  protocols: [virtual]
  module: {file: virtual.wasm}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	httpAddr := saPort(t)
	probe := ctr.LivenessProbe.HTTPGet
	if argValue(ctr.Args, "http-listen") != fmt.Sprintf("%s:%d", probe.Host, probe.Port.IntValue()) {
		t.Fatalf("the liveness probe (%s:%d) does not ask --http-listen (%s)", probe.Host, probe.Port.IntValue(), argValue(ctr.Args, "http-listen"))
	}
	var args []string
	for _, a := range ctr.Args {
		name, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		switch name {
		case "edgecore-socket", "dmi-socket", "manifests", "plugin-dir", "state-dir":
			a = "--" + name + "=" + local(v)
		case "mqtt-broker":
			a = "--mqtt-broker=tcp://" + broker.Addr()
		case "http-listen":
			a = "--http-listen=" + httpAddr
		}
		args = append(args, a)
	}
	h := hostproc.Start(t, testenv.Artifact(t, "wapper-host"), args...)
	ec.WaitFor("MapperRegister for protocol virtual at the DaemonSet's socket", func() bool {
		return slices.ContainsFunc(ec.Registrations, func(r *pb.MapperRegisterRequest) bool {
			return r.Mapper.Protocol == "virtual" && string(r.Mapper.Address) == hostSock
		})
	})
	saEventually(t, "the probes' /api/v1/ping", time.Minute, func() error {
		resp, err := http.Get("http://" + httpAddr + probe.Path)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	saEventually(t, "connected to the MQTT broker", time.Minute, func() error {
		if strings.Contains(h.Logs(), "connected to MQTT broker") {
			return nil
		}
		return errors.New("not yet")
	})
}
