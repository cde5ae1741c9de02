package e2e

// The wapper .deb (make deb, mk/install.mk): what it holds, its maintainer
// scripts, its systemd unit, and the daemon it installs run the way the
// unit runs it. Installing it into this machine's dpkg database happens
// only where systemd runs (TestDebInstall/systemd); elsewhere the package
// is unpacked into a scratch folder and its files are used from there.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"wapper.dev/wapper/internal/testenv"
)

// instUnitPath and the rest are where the package puts its files.
const (
	instUnitPath   = "/usr/lib/systemd/system/wapper-host.service"
	instConfigPath = "/etc/wapper/wapper-host.yaml"
	instPluginDir  = "/usr/lib/wapper/plugins"
	instExamples   = "/usr/share/doc/wapper/examples/standalone"
)

// instDeb returns bin/wapper_*.deb, or handles it as missing.
func instDeb(t *testing.T) string {
	t.Helper()
	debs, _ := filepath.Glob(filepath.Join(testenv.Root(), "bin", "wapper_*_*.deb"))
	if len(debs) == 0 {
		testenv.Missing(t, "bin/wapper_*.deb", "run `make deb` first")
	}
	// make deb leaves one; of several, the newest.
	sort.Slice(debs, func(i, j int) bool { return instMtime(debs[i]).After(instMtime(debs[j])) })
	if len(debs) > 1 {
		t.Logf("several packages in bin/, testing the newest: %s", filepath.Base(debs[0]))
	}
	return debs[0]
}

func instMtime(p string) time.Time {
	fi, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

func instRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestDebInstall(t *testing.T) {
	deb := instDeb(t)
	dpkgDeb := testenv.Bin(t, "dpkg-deb")
	t.Logf("package %s", filepath.Base(deb))

	// The files, unpacked as dpkg would (as root: owners kept), and the
	// control members.
	top := t.TempDir()
	root := filepath.Join(top, "root")
	ctrl := filepath.Join(top, "control")
	instRun(t, dpkgDeb, "-x", deb, root)
	instRun(t, dpkgDeb, "-e", deb, ctrl)

	t.Run("control", func(t *testing.T) { instCheckControl(t, dpkgDeb, deb, ctrl) })
	t.Run("contents", func(t *testing.T) { instCheckContents(t, dpkgDeb, deb, root) })
	t.Run("scripts", func(t *testing.T) { instCheckScripts(t, ctrl) })
	t.Run("unit", func(t *testing.T) { instCheckUnit(t, root) })
	t.Run("runs-as-the-unit-would", func(t *testing.T) { instRunAsUnit(t, top, root) })
	t.Run("systemd", func(t *testing.T) { instSystemd(t, deb, root) })
}

// instDebArch is Debian's name for the architecture tests run on.
func instDebArch() string {
	switch runtime.GOARCH {
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	case "ppc64le":
		return "ppc64el"
	case "mipsle":
		return "mipsel"
	case "mips64le":
		return "mips64el"
	}
	return runtime.GOARCH
}

func instCheckControl(t *testing.T, dpkgDeb, deb, ctrl string) {
	info := instRun(t, dpkgDeb, "--info", deb)
	t.Logf("dpkg-deb --info:\n%s", info)
	fields := map[string]string{}
	for _, f := range []string{"Package", "Version", "Architecture", "Maintainer", "Description", "Depends", "Installed-Size"} {
		fields[f] = strings.TrimSpace(instRun(t, dpkgDeb, "--field", deb, f))
	}
	if fields["Package"] != "wapper" {
		t.Errorf("Package %q, want wapper", fields["Package"])
	}
	if fields["Architecture"] != instDebArch() {
		t.Errorf("Architecture %q, want %q", fields["Architecture"], instDebArch())
	}
	if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`).MatchString(fields["Version"]) {
		t.Errorf("Version %q is not a Debian upstream version (no revision)", fields["Version"])
	}
	if want := "_" + fields["Version"] + "_" + fields["Architecture"] + ".deb"; !strings.HasSuffix(deb, want) {
		t.Errorf("file %s does not end in %s", filepath.Base(deb), want)
	}
	if fields["Depends"] != "" {
		t.Errorf("Depends %q: the binaries are static and the plugins WebAssembly, so none is expected", fields["Depends"])
	}
	if fields["Maintainer"] == "" || fields["Description"] == "" {
		t.Errorf("Maintainer %q, Description %q: both wanted", fields["Maintainer"], fields["Description"])
	}
	conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(conffiles)); len(got) != 1 || got[0] != instConfigPath {
		t.Errorf("conffiles %q, want only %s", got, instConfigPath)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		fi, err := os.Stat(filepath.Join(ctrl, s))
		if err != nil {
			t.Errorf("control member %s: %v", s, err)
			continue
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s has mode %v, want 0755", s, fi.Mode().Perm())
		}
	}
}

// instEntry is a line of dpkg-deb --contents.
type instEntry struct {
	mode, owner string
	size        int64
}

func instCheckContents(t *testing.T, dpkgDeb, deb, root string) {
	out := instRun(t, dpkgDeb, "--contents", deb)
	entries := map[string]instEntry{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		// -rwxr-xr-x root/root  51485585 2026-12-01 02:38 ./usr/bin/wapper-host
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Errorf("unexpected --contents line %q", line)
			continue
		}
		size, _ := strconv.ParseInt(f[2], 10, 64)
		entries[strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")] = instEntry{mode: f[0], owner: f[1], size: size}
	}
	for p, e := range entries {
		if e.owner != "root/root" {
			t.Errorf("%s is owned by %s, want root/root", p, e.owner)
		}
		if e.mode[5] == 'w' || e.mode[8] == 'w' || strings.ContainsAny(e.mode, "sStT") {
			t.Errorf("%s has mode %s: group/other-writable, setuid, setgid or sticky", p, e.mode)
		}
		if e.mode[0] != '-' && e.mode[0] != 'd' {
			t.Errorf("%s has mode %s: only files and folders are expected", p, e.mode)
		}
	}
	want := map[string]string{
		"/usr/bin/wapper-host":             "-rwxr-xr-x",
		"/usr/bin/wapper":                  "-rwxr-xr-x",
		"/usr/bin/wapper-cloud":            "-rwxr-xr-x",
		instUnitPath:                       "-rw-r--r--",
		instConfigPath:                     "-rw-r--r--",
		"/etc/wapper/manifests":            "drwxr-xr-x",
		instPluginDir:                      "drwxr-xr-x",
		instExamples + "/thermostat.yaml":  "-rw-r--r--",
		"/usr/share/doc/wapper/install.md": "-rw-r--r--",
	}
	// Every plugin of the repository: plugins/NAME builds NAME.wasm.
	dirs, _ := filepath.Glob(filepath.Join(testenv.Root(), "plugins", "*"))
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			want[instPluginDir+"/"+filepath.Base(d)+".wasm"] = "-rw-r--r--"
		}
	}
	for p, mode := range want {
		e, ok := entries[p]
		switch {
		case !ok:
			t.Errorf("%s is not in the package", p)
		case e.mode != mode:
			t.Errorf("%s has mode %s, want %s", p, e.mode, mode)
		case mode[0] == '-' && e.size == 0:
			t.Errorf("%s is empty", p)
		}
	}
	for p := range entries {
		if p != "/usr" && p != "/etc" && !strings.HasPrefix(p, "/usr/") && p != "/etc/wapper" && !strings.HasPrefix(p, "/etc/wapper/") {
			t.Errorf("%s: the package writes only under /usr and /etc/wapper", p)
		}
	}
	// The packaged unit, config and docs are the repository's (make deb
	// lays them out with PREFIX=/usr, which changes nothing): a package
	// older than these files is stale.
	for repo, pkg := range map[string]string{
		"deploy/systemd/wapper-host.service":  instUnitPath,
		"deploy/systemd/wapper-host.yaml":     instConfigPath,
		"examples/standalone/thermostat.yaml": instExamples + "/thermostat.yaml",
	} {
		instSame(t, filepath.Join(testenv.Root(), repo), filepath.Join(root, pkg))
	}
	// The binaries run.
	out = instRun(t, filepath.Join(root, "usr/bin/wapper-host"), "--help")
	if !strings.Contains(out, "--config") {
		t.Errorf("packaged wapper-host --help does not mention --config:\n%s", out)
	}
	for _, b := range []string{"wapper", "wapper-cloud"} {
		instRun(t, filepath.Join(root, "usr/bin", b), "--help")
	}
}

// instSame fails the test when the packaged file differs from the
// repository's.
func instSame(t *testing.T, repo, pkg string) {
	t.Helper()
	a, err := os.ReadFile(repo)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pkg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("%s in the package differs from %s: the package is stale, run `make deb`", pkg, repo)
	}
}

// The maintainer scripts: their syntax (and shellcheck's verdict where it
// is installed), then each run under /bin/sh with every command that
// would change the system (user and group tools, systemctl, rm) replaced
// by a stub that only records its arguments.
func instCheckScripts(t *testing.T, ctrl string) {
	scripts := []string{"postinst", "prerm", "postrm"}
	for _, s := range scripts {
		p := filepath.Join(ctrl, s)
		instSame(t, filepath.Join(testenv.Root(), "deploy/deb", s), p)
		if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", s, err, out)
		}
	}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		args := append([]string{"-s", "sh"}, scripts...)
		cmd := exec.Command(sc, args...)
		cmd.Dir = ctrl
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("shellcheck: %v\n%s", err, out)
		} else {
			t.Log("shellcheck -s sh: clean")
		}
	} else {
		t.Log("shellcheck is not installed: the scripts are checked with sh -n and by running them against stubs")
	}

	systemd := instDirExists("/run/systemd/system")
	stubs := t.TempDir()
	for _, c := range []string{"groupadd", "useradd", "usermod", "userdel", "groupdel", "adduser", "deluser", "systemctl", "deb-systemd-invoke", "rm"} {
		instWriteExec(t, filepath.Join(stubs, c), "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> \"$STUB_LOG\"\n")
	}
	// getent DB NAME finds NAME when "DB:NAME" is in $STUB_GETENT.
	instWriteExec(t, filepath.Join(stubs, "getent"), `#!/bin/sh
echo "getent $*" >> "$STUB_LOG"
case " $STUB_GETENT " in *" $1:$2 "*) echo "$2:x:999:"; exit 0 ;; esac
exit 2
`)
	run := func(t *testing.T, getent string, args ...string) []string {
		t.Helper()
		log := filepath.Join(t.TempDir(), "calls")
		cmd := exec.Command("sh", append([]string{filepath.Join(ctrl, args[0])}, args[1:]...)...)
		cmd.Env = []string{"PATH=" + stubs + ":/usr/sbin:/usr/bin:/sbin:/bin", "STUB_LOG=" + log, "STUB_GETENT=" + getent}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		b, _ := os.ReadFile(log)
		var calls []string
		if s := strings.TrimSpace(string(b)); s != "" {
			calls = strings.Split(s, "\n")
		}
		t.Logf("%s ran: %q", strings.Join(args, " "), calls)
		return calls
	}
	has := func(calls []string, c string) bool {
		for _, x := range calls {
			if x == c {
				return true
			}
		}
		return false
	}
	expect := func(t *testing.T, calls []string, yes, no []string) {
		t.Helper()
		for _, c := range yes {
			if !has(calls, c) {
				t.Errorf("missing call %q in %q", c, calls)
			}
		}
		for _, c := range no {
			if has(calls, c) {
				t.Errorf("unexpected call %q in %q", c, calls)
			}
		}
	}
	const (
		groupadd = "groupadd --system wapper"
		useradd  = "useradd --system --gid wapper --home-dir /var/lib/wapper --no-create-home --shell /usr/sbin/nologin --comment wapper edge host wapper"
		dialout  = "usermod --append --groups dialout wapper"
		gpio     = "usermod --append --groups gpio wapper"
		enable   = "systemctl enable wapper-host.service"
		start    = "deb-systemd-invoke start wapper-host.service"
		restart  = "systemctl try-restart wapper-host.service"
		stop     = "systemctl stop wapper-host.service"
		rmState  = "rm -rf /var/lib/wapper"
	)
	onlyWithSystemd := func(cs ...string) (yes, no []string) {
		if systemd {
			return cs, nil
		}
		return nil, cs
	}
	if !systemd {
		t.Log("systemd is not running here (no /run/systemd/system): the scripts take their no-systemd branches (enable, but no daemon-reload, start or stop)")
	}

	t.Run("install-without-gpio", func(t *testing.T) {
		calls := run(t, "group:dialout", "postinst", "configure", "")
		expect(t, calls, []string{groupadd, useradd, dialout, enable}, []string{gpio, restart})
		yes, no := onlyWithSystemd(start, "systemctl daemon-reload")
		expect(t, calls, yes, no)
	})
	t.Run("install-with-gpio", func(t *testing.T) {
		calls := run(t, "group:dialout group:gpio", "postinst", "configure", "")
		expect(t, calls, []string{groupadd, useradd, dialout, gpio, enable}, nil)
	})
	t.Run("upgrade", func(t *testing.T) {
		calls := run(t, "group:wapper passwd:wapper group:dialout", "postinst", "configure", "0.0.0~old")
		expect(t, calls, []string{dialout}, []string{groupadd, useradd, enable, start})
		yes, no := onlyWithSystemd(restart)
		expect(t, calls, yes, no)
		calls = run(t, "", "prerm", "upgrade", "0.0.0~new")
		expect(t, calls, nil, []string{stop})
	})
	t.Run("remove", func(t *testing.T) {
		calls := run(t, "", "prerm", "remove")
		yes, no := onlyWithSystemd(stop)
		expect(t, calls, yes, no)
		calls = run(t, "", "postrm", "remove")
		expect(t, calls, nil, []string{rmState, "userdel wapper", "groupdel wapper"})
	})
	t.Run("purge", func(t *testing.T) {
		calls := run(t, "", "postrm", "purge")
		expect(t, calls, []string{rmState, "rm -f /etc/systemd/system/multi-user.target.wants/wapper-host.service"},
			[]string{"userdel wapper", "groupdel wapper"})
	})
	t.Run("unknown-argument", func(t *testing.T) {
		for _, s := range scripts {
			cmd := exec.Command("sh", filepath.Join(ctrl, s), "no-such-action")
			cmd.Env = []string{"PATH=" + stubs + ":/usr/bin:/bin", "STUB_LOG=" + filepath.Join(t.TempDir(), "calls")}
			if err := cmd.Run(); err == nil {
				t.Errorf("%s no-such-action exited 0", s)
			}
		}
	})
}

func instWriteExec(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func instDirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// instUnit is a parsed unit file: section -> key -> values, in order.
type instUnit map[string]map[string][]string

// get returns the last value of a key ("" and false when unset).
func (u instUnit) get(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// instKnownKeys are the keys the wapper unit may use, by section: a modest
// subset of systemd's, enough to catch a typo or a key in the wrong section
// where systemd-analyze is not installed.
var instKnownKeys = map[string][]string{
	"Unit": {"Description", "Documentation", "Wants", "Requires", "After", "Before", "ConditionPathExists", "StartLimitIntervalSec", "StartLimitBurst"},
	"Service": {"Type", "ExecStart", "ExecStartPre", "ExecReload", "Restart", "RestartSec", "TimeoutStopSec", "TimeoutStartSec",
		"User", "Group", "SupplementaryGroups", "DynamicUser", "StateDirectory", "StateDirectoryMode", "ConfigurationDirectory",
		"ConfigurationDirectoryMode", "RuntimeDirectory", "CacheDirectory", "LogsDirectory", "WorkingDirectory", "UMask", "Environment", "EnvironmentFile",
		"NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectSystem", "ProtectHome", "PrivateTmp",
		"PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
		"ProtectClock", "ProtectHostname", "ProtectProc", "ProcSubset", "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime",
		"RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute", "RemoveIPC", "SystemCallArchitectures",
		"SystemCallFilter", "SystemCallErrorNumber", "ReadWritePaths", "ReadOnlyPaths", "DeviceAllow", "DevicePolicy", "LimitNOFILE"},
	"Install": {"WantedBy", "RequiredBy", "Alias", "Also"},
}

// instParseUnit reads a unit file: comments, [Section] lines and
// Key=Value lines, no continuation lines.
func instParseUnit(t *testing.T, path string) instUnit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	known := map[string]map[string]bool{}
	for s, keys := range instKnownKeys {
		known[s] = map[string]bool{}
		for _, k := range keys {
			known[s][k] = true
		}
	}
	u := instUnit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if known[section] == nil {
				t.Errorf("%s:%d: unknown section [%s]", path, n, section)
			}
			if u[section] != nil {
				t.Errorf("%s:%d: section [%s] twice", path, n, section)
			}
			u[section] = map[string][]string{}
		case strings.HasSuffix(line, `\`):
			t.Errorf("%s:%d: continuation lines are not expected", path, n)
		default:
			k, v, ok := strings.Cut(line, "=")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch {
			case !ok:
				t.Errorf("%s:%d: not Key=Value: %q", path, n, line)
			case section == "":
				t.Errorf("%s:%d: %s outside a section", path, n, k)
			case !known[section][k]:
				t.Errorf("%s:%d: %s is not a key of [%s]", path, n, k, section)
			default:
				u[section][k] = append(u[section][k], v)
			}
		}
	}
	return u
}

func instCheckUnit(t *testing.T, root string) {
	unitFile := filepath.Join(root, instUnitPath)
	u := instParseUnit(t, unitFile)
	want := map[string]string{
		"Type": "exec", "User": "wapper", "Group": "wapper", "StateDirectory": "wapper", "ConfigurationDirectory": "wapper",
		"Restart": "on-failure", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
		"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK", "LockPersonality": "yes", "RestrictRealtime": "yes",
		"SystemCallArchitectures": "native", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
		"ExecStart": "/usr/bin/wapper-host --config " + instConfigPath,
	}
	for k, v := range want {
		if got, ok := u.get("Service", k); !ok || got != v {
			t.Errorf("[Service] %s=%q (set: %v), want %q", k, got, ok, v)
		}
	}
	// Settings that would break the host: wazero needs writable-executable
	// memory; the device allow-lists of PrivateDevices and ProtectClock
	// take away serial ports and GPIO chips; a SupplementaryGroups= group
	// that does not exist (gpio, on plain Debian) stops the unit from
	// starting, so the package adds the user to the groups that exist.
	for _, k := range []string{"MemoryDenyWriteExecute", "PrivateDevices", "ProtectClock", "DeviceAllow", "DevicePolicy", "SupplementaryGroups", "DynamicUser"} {
		if v, ok := u.get("Service", k); ok {
			t.Errorf("[Service] %s=%s is set; the host needs it unset", k, v)
		}
	}
	if got, _ := u.get("Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("[Install] WantedBy=%q, want multi-user.target", got)
	}

	// TimeoutStopSec leaves wapper-host its whole --shutdown-timeout.
	stop, _ := u.get("Service", "TimeoutStopSec")
	stopD, err := time.ParseDuration(stop)
	if err != nil {
		t.Fatalf("TimeoutStopSec=%q: %v", stop, err)
	}
	cfg := instConfig(t, filepath.Join(root, instConfigPath))
	shutdown := fmt.Sprint(cfg["shutdown-timeout"])
	shutD, err := time.ParseDuration(shutdown)
	if err != nil {
		t.Fatalf("config shutdown-timeout %q: %v", shutdown, err)
	}
	if stopD < shutD+5*time.Second {
		t.Errorf("TimeoutStopSec=%s leaves too little over shutdown-timeout %s for the final saves", stopD, shutD)
	}

	// systemd's own checks, where systemd-analyze is installed: on a copy
	// whose ExecStart names the unpacked binary (verify checks that it
	// exists and is executable).
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not installed: the unit is checked by the parser above only")
		return
	}
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	copyDir := t.TempDir()
	copyFile := filepath.Join(copyDir, "wapper-host.service")
	body := strings.Replace(string(b), "ExecStart=/usr/bin/wapper-host", "ExecStart="+filepath.Join(root, "usr/bin/wapper-host"), 1)
	if err := os.WriteFile(copyFile, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", copyFile).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	} else {
		t.Log("systemd-analyze verify: clean")
	}
	out, err = exec.Command(sa, "security", "--offline=true", copyFile).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\S+)`).FindSubmatch(out)
	switch {
	case err != nil && m == nil:
		t.Logf("systemd-analyze security --offline (systemd 250 or later) gave no rating: %v\n%s", err, out)
	case m == nil:
		t.Errorf("systemd-analyze security --offline: no overall rating in\n%s", out)
	default:
		level, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("systemd-analyze security: exposure %s %s", m[1], m[2])
		if level >= 5 {
			t.Errorf("systemd-analyze security rates the unit's exposure %s %s; want below 5\n%s", m[1], m[2], out)
		}
	}
}

func instConfig(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// instLockedBuffer collects a process's output.
type instLockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *instLockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *instLockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// instRunAsUnit runs the unpacked wapper-host the way wapper-host.service
// does: its ExecStart command line and the packaged config, as an
// unprivileged user that can write only the state folder, in that folder,
// with every absolute path moved under the unpacked root and the two
// listeners moved to free loopback ports; the demo thermostat of the
// packaged examples in the manifests folder.
func instRunAsUnit(t *testing.T, top, root string) {
	u := instParseUnit(t, filepath.Join(root, instUnitPath))
	cfgFile := filepath.Join(root, instConfigPath)
	cfg := instConfig(t, cfgFile)

	// The packaged defaults.
	if got := cfg["manifests"]; got != "/etc/wapper/manifests" {
		t.Errorf("config manifests %v, want /etc/wapper/manifests", got)
	}
	if got := cfg["plugin-dir"]; got != instPluginDir {
		t.Errorf("config plugin-dir %v, want %s", got, instPluginDir)
	}
	stateDir, _ := u.get("Service", "StateDirectory")
	if got := cfg["state-dir"]; got != "/var/lib/"+stateDir {
		t.Errorf("config state-dir %v, want the unit's StateDirectory /var/lib/%s", got, stateDir)
	}
	for _, k := range []string{"http-listen", "mqtt-listen"} {
		host, _, err := net.SplitHostPort(fmt.Sprint(cfg[k]))
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			t.Errorf("config %s %v: want a loopback address", k, cfg[k])
		}
	}

	// The rewritten config and folders.
	for k, v := range cfg {
		if s, ok := v.(string); ok && strings.HasPrefix(s, "/") {
			cfg[k] = filepath.Join(root, s)
		}
	}
	httpAddr := saPort(t)
	cfg["http-listen"], cfg["mqtt-listen"] = httpAddr, saPort(t)
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	examples, _ := filepath.Glob(filepath.Join(root, instExamples, "*.yaml"))
	if len(examples) == 0 {
		t.Fatalf("no examples in %s", instExamples)
	}
	for _, e := range examples {
		b, err := os.ReadFile(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(fmt.Sprint(cfg["manifests"]), filepath.Base(e)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The user: nobody, standing in for wapper. Everything unpacked is
	// root's; the state folder (systemd makes it from StateDirectory=) is
	// the user's, and the folders above the root are opened for it.
	uid, gid := uint32(65534), uint32(65534)
	if nb, err := user.Lookup("nobody"); err == nil {
		if v, err := strconv.Atoi(nb.Uid); err == nil {
			uid = uint32(v)
		}
		if v, err := strconv.Atoi(nb.Gid); err == nil {
			gid = uint32(v)
		}
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root", "the host runs as an unprivileged user here, which needs root to set up (make test runs as root)")
	}
	state := fmt.Sprint(cfg["state-dir"])
	if err := os.MkdirAll(filepath.Dir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(state, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Clean(os.TempDir())
	for d := root; strings.HasPrefix(d, tmp+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// ExecStart, its absolute paths moved under the root.
	execStart, _ := u.get("Service", "ExecStart")
	argv := strings.Fields(execStart)
	for i, a := range argv {
		if strings.HasPrefix(a, "/") {
			argv[i] = filepath.Join(root, a)
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	workDir, _ := u.get("Service", "WorkingDirectory")
	cmd.Dir = filepath.Join(root, workDir)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", "HOME=" + state, "USER=nobody", "LOGNAME=nobody"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	var out instLockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t.Logf("running as uid %d: %s (cwd %s)", uid, strings.Join(argv, " "), cmd.Dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	t.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("wapper-host output:\n%s", out.String())
		}
	})
	get := func(path string, v any) error {
		select {
		case err := <-done:
			exited = true
			t.Fatalf("wapper-host exited early (%v):\n%s", err, out.String())
		default:
		}
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		if v == nil {
			return nil
		}
		return yaml.Unmarshal(b, v)
	}
	saEventually(t, "the packaged wapper-host answers /api/v1/ping", 60*time.Second, func() error { return get("/api/v1/ping", nil) })
	saEventually(t, "the demo thermostat runs and reports", 60*time.Second, func() error {
		var resp struct {
			Devices []saDevice `json:"devices"`
		}
		if err := get("/api/v1/devices", &resp); err != nil {
			return err
		}
		for _, d := range resp.Devices {
			if d.Namespace+"/"+d.Name != "default/thermostat" {
				continue
			}
			if d.Phase != "Running" {
				return fmt.Errorf("thermostat phase %s (%s)", d.Phase, d.Reason)
			}
			if d.twin("temperature").Reported == "" {
				return fmt.Errorf("thermostat has reported no temperature yet")
			}
			t.Logf("thermostat %s, temperature %s", d.Phase, d.twin("temperature").Reported)
			return nil
		}
		return fmt.Errorf("no default/thermostat in %d devices", len(resp.Devices))
	})

	// systemd stops the unit with SIGTERM and kills it TimeoutStopSec later.
	stop, _ := u.get("Service", "TimeoutStopSec")
	stopD, _ := time.ParseDuration(stop)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		exited = true
		if err != nil {
			t.Errorf("wapper-host exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(stopD):
		t.Errorf("wapper-host did not exit within TimeoutStopSec=%s of SIGTERM", stop)
	}

	// It wrote only its state folder (ProtectSystem=strict would refuse
	// anything else).
	filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if p == state || strings.HasPrefix(p, state+"/") {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == uid {
				t.Errorf("%s was created outside the state folder", p)
			}
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(state, "compile-cache")); err != nil {
		t.Errorf("no compile cache in the state folder: %v", err)
	}
}

// instSystemd installs the package into this machine with dpkg, starts the
// unit with systemctl, checks it serves, and purges the package: only
// where systemd runs, as root, and the package is not installed already.
func instSystemd(t *testing.T, deb, root string) {
	if !instDirExists("/run/systemd/system") {
		t.Log("systemd is not running here (no /run/systemd/system): dpkg -i, systemctl start wapper-host and dpkg --purge are not tried; the package was checked unpacked instead")
		return
	}
	if os.Geteuid() != 0 {
		t.Log("not root: dpkg -i and systemctl start wapper-host are not tried")
		return
	}
	dpkg := testenv.Bin(t, "dpkg")
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "wapper").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Logf("the wapper package is installed on this machine already (%s): left alone, dpkg -i not tried", out)
		return
	}
	cfg := instConfig(t, filepath.Join(testenv.Root(), "deploy/systemd/wapper-host.yaml"))
	addr := fmt.Sprint(cfg["http-listen"])
	if l, err := net.Listen("tcp", addr); err != nil {
		t.Logf("%s is taken on this machine (%v): dpkg -i not tried", addr, err)
		return
	} else {
		l.Close()
	}
	// The package keeps its system user on purge, as Debian advises; the
	// test removes it when it made it.
	if _, err := user.Lookup("wapper"); err != nil {
		t.Cleanup(func() {
			exec.Command("userdel", "wapper").Run()
			if exec.Command("getent", "group", "wapper").Run() == nil {
				exec.Command("groupdel", "wapper").Run()
			}
		})
	}
	instRun(t, dpkg, "-i", deb)
	purged := false
	purge := func() {
		if !purged {
			purged = true
			instRun(t, dpkg, "--purge", "wapper")
		}
	}
	t.Cleanup(purge)
	for _, g := range []string{"dialout"} {
		if out := instRun(t, "id", "-nG", "wapper"); !strings.Contains(" "+strings.TrimSpace(out)+" ", " "+g+" ") {
			t.Errorf("user wapper is not in group %s: %s", g, out)
		}
	}
	instRun(t, "systemctl", "start", "wapper-host.service")
	saEventually(t, "wapper-host.service answers /api/v1/ping", 60*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/api/v1/ping")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	if out := strings.TrimSpace(instRun(t, "systemctl", "show", "-p", "MainPID", "--value", "wapper-host.service")); out != "0" {
		status, _ := os.ReadFile("/proc/" + out + "/status")
		wapper, err := user.Lookup("wapper")
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^Uid:\s+` + wapper.Uid + `\s`).Match(status) {
			t.Errorf("wapper-host (pid %s) does not run as wapper (uid %s):\n%s", out, wapper.Uid, status)
		}
	}
	purge()
	for _, p := range []string{instUnitPath, "/var/lib/wapper", instConfigPath} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still there after dpkg --purge", p)
		}
	}
	t.Log("installed with dpkg -i, started with systemctl, answered, purged")
}
