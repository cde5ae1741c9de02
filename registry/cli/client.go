package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"oras.land/oras-go/v2/registry"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/hostio"
	"wapper.dev/wapper/registry/artifact"
	"wapper.dev/wapper/registry/client"
	"wapper.dev/wapper/registry/modcheck"
)

// Checker runs the loader checks in `wapper push`. The wapper binary sets
// it to the host runtime's check; the default is modcheck.Loader.
var Checker modcheck.Checker = modcheck.Loader

// clientFlags are the registry access flags every client command takes.
type clientFlags struct {
	opts          client.Options
	passwordStdin bool
	quiet         bool
}

func (f *clientFlags) add(fs *pflag.FlagSet) {
	fs.BoolVar(&f.opts.PlainHTTP, "plain-http", false, "use plain HTTP instead of HTTPS (loopback registries only)")
	fs.BoolVar(&f.opts.Insecure, "insecure", false, "skip TLS certificate verification")
	fs.StringVar(&f.opts.CAFile, "ca-file", "", "PEM file of extra CA certificates to trust")
	fs.StringVarP(&f.opts.Username, "username", "u", "", "registry user name (default: from the docker config file)")
	fs.StringVarP(&f.opts.Password, "password", "p", "", "registry password (prefer --password-stdin)")
	fs.BoolVar(&f.passwordStdin, "password-stdin", false, "read the registry password from standard input")
	fs.StringVar(&f.opts.DockerConfig, "registry-config", "", "docker config file with credentials (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json)")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "no progress output")
}

func (f *clientFlags) client(cmd *cobra.Command) (*client.Client, error) {
	o := f.opts
	if f.passwordStdin {
		pw, err := readPassword(cmd.InOrStdin())
		if err != nil {
			return nil, err
		}
		o.Password = pw
	}
	if o.Password != "" && o.Username == "" {
		return nil, errors.New("a password needs --username")
	}
	if !f.quiet {
		o.Progress = cmd.ErrOrStderr()
	}
	return client.New(o)
}

func pushCmd() *cobra.Command {
	var (
		cf         clientFlags
		meta       artifact.Metadata
		schemaFile string
		noCheck    bool
		createdArg string
	)
	c := &cobra.Command{
		Use:   "push FILE.wasm REF",
		Short: "Check a plugin module and publish it as a Wasm OCI artifact",
		Long: `Check a plugin module the way the host's loader does, then publish it to an
OCI registry as a Wasm OCI artifact (see registry/FORMAT.md). REF is
HOST[:PORT]/REPO[:TAG]; the tag defaults to "latest". The ABI version and the
module's exports and imports are read from the module itself; the protocols it
provides (at least one) and the grants it asks for come from --protocol and
--grant. Grants are checked with the host's own parser.

The same module and flags always give the same manifest digest: no creation
time is written unless --created gives one.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			wasm, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("read module: %w", err)
			}
			m := meta
			if schemaFile != "" {
				s, err := os.ReadFile(schemaFile)
				if err != nil {
					return fmt.Errorf("read config schema: %w", err)
				}
				if !json.Valid(s) {
					return fmt.Errorf("config schema %s is not valid JSON", schemaFile)
				}
				m.ConfigSchema = compactJSON(s)
			}
			var created time.Time
			if createdArg != "" {
				if created, err = time.Parse(time.RFC3339, createdArg); err != nil {
					return fmt.Errorf("--created %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", createdArg)
				}
			}
			if _, err := hostio.GrantsFromList(m.Grants); err != nil { // before the slower module check
				return grantsError(err)
			}
			if !noCheck {
				got, err := Checker(cmd.Context(), wasm)
				if err != nil {
					return fmt.Errorf("%s: %w (fix the module; the host would refuse it)", args[0], err)
				}
				m = got.Merge(m)
			}
			if err := checkPluginMeta(m); err != nil {
				return err
			}
			b, err := artifact.Build(wasm, m, created)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			cl, err := cf.client(cmd)
			if err != nil {
				return err
			}
			desc, err := cl.Push(cmd.Context(), args[1], b)
			if err != nil {
				return err
			}
			r, _ := registry.ParseReference(args[1])
			fmt.Fprintf(cmd.OutOrStdout(), "%s/%s@%s\n", r.Registry, r.Repository, desc.Digest)
			return nil
		},
	}
	cf.add(c.Flags())
	c.Flags().StringSliceVar(&meta.Protocols, "protocol", nil, "protocol the plugin provides (repeatable)")
	c.Flags().StringArrayVar(&meta.Grants, "grant", nil, "grant the plugin asks for, in MapperPlugin syntax (repeatable)")
	c.Flags().StringVar(&schemaFile, "config-schema", "", "JSON schema file of the plugin config")
	c.Flags().BoolVar(&noCheck, "no-check", false, "skip the loader checks (for modules that are not wapper plugins)")
	c.Flags().StringVar(&createdArg, "created", "", "creation time to record (RFC 3339); by default none, so that pushing the same module and flags again gives the same digest")
	return c
}

// checkPluginMeta refuses what a MapperPlugin made from the artifact could
// not use: no protocol, a protocol name the MapperPlugin API refuses, or a
// grant the host's grants parser refuses.
func checkPluginMeta(m artifact.Metadata) error {
	if len(m.Protocols) == 0 {
		return errors.New("no protocol: pass --protocol NAME (repeatable), the KubeEdge protocol the plugin provides, as DeviceModels name it in spec.protocol; it becomes the MapperPlugin's spec.protocols")
	}
	spec := v1alpha1.MapperPluginSpec{Protocols: m.Protocols}
	for _, e := range spec.Validate(field.NewPath("spec")) {
		if strings.HasPrefix(e.Field, "spec.protocols") {
			return fmt.Errorf("--protocol: %s (it becomes the MapperPlugin's spec.protocols)", e.ErrorBody())
		}
	}
	if _, err := hostio.GrantsFromList(m.Grants); err != nil {
		return grantsError(err)
	}
	return nil
}

func grantsError(err error) error {
	return fmt.Errorf("--grant: %w (grants use MapperPlugin syntax: tcp://HOST:PORT or udp://HOST:PORT, an absolute serial device path glob, or a GPIO line name)", err)
}

func compactJSON(b []byte) json.RawMessage {
	var out strings.Builder
	var v any
	if json.Unmarshal(b, &v) == nil {
		e := json.NewEncoder(&out)
		e.SetEscapeHTML(false)
		if e.Encode(v) == nil {
			return json.RawMessage(strings.TrimSpace(out.String()))
		}
	}
	return b
}

func pullCmd() *cobra.Command {
	var (
		cf  clientFlags
		out string
	)
	c := &cobra.Command{
		Use:   "pull REF",
		Short: "Fetch a plugin module, verifying every digest",
		Long: `Fetch the plugin module at REF (HOST[:PORT]/REPO[:TAG|@DIGEST]), verify the
manifest and the module against their digests, and write the module to -o
(default: the repository's last path element with .wasm, in the current
directory). Prints the manifest digest.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := cf.client(cmd)
			if err != nil {
				return err
			}
			p, err := cl.Pull(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if out == "" {
				out = path.Base(p.Manifest.Ref.Repository) + ".wasm"
			}
			if err := writeFile(out, p.Wasm); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s/%s@%s -> %s\n", p.Manifest.Ref.Registry, p.Manifest.Ref.Repository, p.Manifest.Desc.Digest, out)
			return nil
		},
	}
	cf.add(c.Flags())
	c.Flags().StringVarP(&out, "output", "o", "", "file to write the module to")
	return c
}

// writeFile writes through a temporary file and a rename, so that a
// failed pull never leaves a partial module behind.
func writeFile(dst string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(dst), ".wapper-pull-")
	if err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}

// Inspection is what `wapper inspect --json` prints.
type Inspection struct {
	Reference string             `json:"reference"`
	Digest    string             `json:"digest"`
	MediaType string             `json:"mediaType"`
	Size      int64              `json:"size"`
	Plugin    bool               `json:"plugin"`
	Problem   string             `json:"problem,omitempty"`
	Module    *moduleInfo        `json:"module,omitempty"`
	Metadata  *artifact.Metadata `json:"metadata,omitempty"`
	Manifest  json.RawMessage    `json:"manifest"`
}

type moduleInfo struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

func inspectCmd() *cobra.Command {
	var (
		cf     clientFlags
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "inspect REF",
		Short: "Show a plugin artifact's manifest, metadata and digests",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := cf.client(cmd)
			if err != nil {
				return err
			}
			m, err := cl.FetchManifest(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			in := Inspection{
				Reference: m.Ref.Registry + "/" + m.Ref.Repository + "@" + m.Desc.Digest.String(),
				Digest:    m.Desc.Digest.String(), MediaType: m.Desc.MediaType, Size: m.Desc.Size,
				Manifest: json.RawMessage(m.Raw),
			}
			if a, err := artifact.Parse(m.Desc.MediaType, m.Raw); err != nil {
				in.Problem = err.Error()
			} else {
				in.Plugin = true
				in.Module = &moduleInfo{Digest: a.Module.Digest.String(), Size: a.Module.Size}
				in.Metadata = &a.Metadata
			}
			w := cmd.OutOrStdout()
			if asJSON {
				e := json.NewEncoder(w)
				e.SetIndent("", "  ")
				return e.Encode(in)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "Reference:\t%s\n", in.Reference)
			fmt.Fprintf(tw, "Digest:\t%s\n", in.Digest)
			fmt.Fprintf(tw, "Media type:\t%s\n", in.MediaType)
			fmt.Fprintf(tw, "Size:\t%d\n", in.Size)
			if !in.Plugin {
				fmt.Fprintf(tw, "Plugin:\tno (%s)\n", in.Problem)
			} else {
				md := in.Metadata
				fmt.Fprintf(tw, "Module:\t%s (%d bytes)\n", in.Module.Digest, in.Module.Size)
				fmt.Fprintf(tw, "ABI:\t%s\n", orDash(md.ABIVersion()))
				fmt.Fprintf(tw, "Protocols:\t%s\n", orDash(strings.Join(md.Protocols, ", ")))
				fmt.Fprintf(tw, "Grants:\t%s\n", orDash(strings.Join(md.Grants, ", ")))
				fmt.Fprintf(tw, "Config schema:\t%s\n", orDash(string(md.ConfigSchema)))
				fmt.Fprintf(tw, "Exports:\t%s\n", orDash(strings.Join(md.Exports, ", ")))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(w, "Manifest:")
			var pretty strings.Builder
			var v any
			if json.Unmarshal(m.Raw, &v) == nil {
				e := json.NewEncoder(&pretty)
				e.SetIndent("  ", "  ")
				_ = e.Encode(v)
			}
			fmt.Fprint(w, "  "+pretty.String())
			return nil
		},
	}
	cf.add(c.Flags())
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func tagCmd() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:   "tag SRC DST",
		Short: "Point a tag at the artifact SRC names",
		Long: `Point DST at the artifact SRC names. DST is a full reference, or just a tag
in SRC's repository. Across repositories or registries the artifact is copied.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := cf.client(cmd)
			if err != nil {
				return err
			}
			dst := args[1]
			if !strings.Contains(dst, "/") {
				src, err := registry.ParseReference(args[0])
				if err != nil {
					return fmt.Errorf("reference %q: %w", args[0], err)
				}
				dst = src.Registry + "/" + src.Repository + ":" + dst
			}
			desc, err := cl.Tag(cmd.Context(), args[0], dst)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s -> %s\n", dst, desc.Digest)
			return nil
		},
	}
	cf.add(c.Flags())
	return c
}

func lsCmd() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:   "ls REPO",
		Short: "List the tags of a repository (HOST[:PORT]/REPO)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := cf.client(cmd)
			if err != nil {
				return err
			}
			tags, err := cl.Tags(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			for _, t := range tags {
				fmt.Fprintln(cmd.OutOrStdout(), t)
			}
			return nil
		},
	}
	cf.add(c.Flags())
	return c
}
