package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"wapper.dev/wapper/registry/auth"
	"wapper.dev/wapper/registry/server"
	"wapper.dev/wapper/registry/store"
)

// registryCmd returns `wapper registry` with its subcommands.
func registryCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "registry",
		Short: "Run wapper's embedded OCI registry",
	}
	c.AddCommand(serveCmd(), passwdCmd())
	return c
}

func serveCmd() *cobra.Command {
	var (
		root, listen, htpasswd, user, tlsCert, tlsKey string
		anonRead                                      bool
	)
	c := &cobra.Command{
		Use:   "serve",
		Short: "Serve an OCI distribution-spec 1.1 registry from a directory",
		Long: `Serve an OCI distribution-spec 1.1 registry whose content lives under --root.

Pushes need a credential: --user with the password in $WAPPER_REGISTRY_PASSWORD,
or an --htpasswd file with bcrypt hashes (see "wapper registry passwd").
Reads need one too unless --anonymous-read is set.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if root == "" {
				return errors.New("--root is required: the directory that holds the registry's content")
			}
			var checkers auth.Any
			if htpasswd != "" {
				h, err := auth.LoadHtpasswd(htpasswd)
				if err != nil {
					return err
				}
				checkers = append(checkers, h)
			}
			if user != "" {
				pw := os.Getenv("WAPPER_REGISTRY_PASSWORD")
				if pw == "" {
					return errors.New("--user needs a password in $WAPPER_REGISTRY_PASSWORD")
				}
				checkers = append(checkers, auth.Static{User: user, Password: pw})
			}
			if len(checkers) == 0 && !anonRead {
				return errors.New("no credentials configured and anonymous reads off: nobody could use this registry; pass --htpasswd, --user or --anonymous-read")
			}
			if (tlsCert == "") != (tlsKey == "") {
				return errors.New("--tls-cert and --tls-key go together")
			}
			st, err := store.Open(root)
			if err != nil {
				return err
			}
			defer func() {
				if err := st.Close(); err != nil {
					slog.Warn("close registry store", "root", root, "err", err)
				}
			}()
			cfg := server.Config{Store: st, AnonymousRead: anonRead, Logger: slog.Default()}
			if len(checkers) > 0 {
				cfg.Auth = checkers
			} else {
				slog.Warn("no credentials configured: the registry is read-only")
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w (pick a free address with --listen)", listen, err)
			}
			if tlsCert == "" && !isLoopbackAddr(ln.Addr()) {
				slog.Warn("serving plain HTTP on a non-loopback address; credentials travel in clear text (use --tls-cert/--tls-key)", "addr", ln.Addr().String())
			}
			srv := &http.Server{Handler: server.New(cfg), ReadHeaderTimeout: 30 * time.Second}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			scheme := "http"
			if tlsCert != "" {
				scheme = "https"
			}
			slog.Info("registry serving", "url", scheme+"://"+ln.Addr().String(), "root", root, "anonymous_read", anonRead)
			// The address line on stdout lets scripts and tests find a
			// port chosen with --listen 127.0.0.1:0.
			fmt.Fprintf(cmd.OutOrStdout(), "listening on %s\n", ln.Addr())
			if tlsCert != "" {
				err = srv.ServeTLS(ln, tlsCert, tlsKey)
			} else {
				err = srv.Serve(ln)
			}
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&root, "root", "", "directory holding the registry's content (required)")
	f.StringVar(&listen, "listen", "127.0.0.1:5000", "address to listen on (port 0 picks a free one)")
	f.StringVar(&htpasswd, "htpasswd", "", "file of user:bcrypt-hash lines accepted as credentials")
	f.StringVar(&user, "user", "", "user name accepted as a credential; password from $WAPPER_REGISTRY_PASSWORD")
	f.BoolVar(&anonRead, "anonymous-read", false, "allow pulls without credentials")
	f.StringVar(&tlsCert, "tls-cert", "", "TLS certificate file (PEM)")
	f.StringVar(&tlsKey, "tls-key", "", "TLS key file (PEM)")
	return c
}

func passwdCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "passwd USER",
		Short: "Print an htpasswd line for USER with the password read from stdin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readPassword(cmd.InOrStdin())
			if err != nil {
				return err
			}
			line, err := auth.Line(args[0], pw)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), line)
			return nil
		},
	}
}

func isLoopbackAddr(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
