package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/gossip"
)

func init() {
	register("tls", newTLSCACmd)
	register("tls", func(m *Main) *cobra.Command { return newTLSCertCmd(m, gossip.ServerCert) })
	register("tls", func(m *Main) *cobra.Command { return newTLSCertCmd(m, gossip.ClientCert) })
}

const day = 24 * time.Hour

func newTLSCACmd(m *Main) *cobra.Command {
	var (
		outDir, name string
		days         int
		force        bool
	)
	c := &cobra.Command{
		Use:   "ca",
		Short: "Make a certificate authority for the gossip transport (ca.pem, ca-key.pem)",
		Long: `Make a new CA for a cluster's QUIC transport: ca.pem (give it to every node as
gossip.tls.ca_file) and ca-key.pem (keep it secret; it signs node certificates).`,
		Example: `  patina tls ca --out-dir /etc/patina/tls`,
		Args:    noArgs,
	}
	c.Flags().StringVar(&outDir, "out-dir", ".", "folder to write the files to")
	c.Flags().StringVar(&name, "name", "Patina CA", "common name")
	c.Flags().IntVar(&days, "days", 3650, "validity in days")
	c.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	c.RunE = func(c *cobra.Command, args []string) error {
		if days <= 0 {
			return usagef("--days %d: want > 0", days)
		}
		certPEM, keyPEM, err := gossip.GenerateCA(name, time.Duration(days)*day)
		if err != nil {
			return err
		}
		return m.writePair(outDir, "ca", certPEM, keyPEM, force)
	}
	return c
}

func newTLSCertCmd(m *Main, kind gossip.CertKind) *cobra.Command {
	use, what := "server", "a node certificate (server.pem, server-key.pem): serves and dials peers"
	if kind == gossip.ClientCert {
		use, what = "client", "a client-only certificate (client.pem, client-key.pem): dials peers"
	}
	var (
		outDir, name, caFile, caKey string
		hosts                       []string
		days                        int
		force                       bool
	)
	c := &cobra.Command{
		Use:   use,
		Short: "Make " + what,
		Long: "Make " + what + `, signed by the CA made with "patina tls ca". Give it to the node as
gossip.tls.cert_file and gossip.tls.key_file, with the CA as gossip.tls.ca_file.`,
		Example: fmt.Sprintf(`  patina tls %s --ca ca.pem --ca-key ca-key.pem --host 10.0.0.5 --host node1.internal`, use),
		Args:    noArgs,
	}
	c.Flags().StringVar(&outDir, "out-dir", ".", "folder to write the files to")
	c.Flags().StringVar(&name, "name", "patina-"+use, "common name")
	c.Flags().StringVar(&caFile, "ca", "ca.pem", "CA certificate")
	c.Flags().StringVar(&caKey, "ca-key", "ca-key.pem", "CA private key")
	c.Flags().StringArrayVar(&hosts, "host", nil, "DNS name or IP address the certificate names; repeatable")
	c.Flags().IntVar(&days, "days", 825, "validity in days")
	c.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	c.RunE = func(c *cobra.Command, args []string) error {
		if days <= 0 {
			return usagef("--days %d: want > 0", days)
		}
		caCert, err := os.ReadFile(caFile)
		if err != nil {
			return usagef("--ca: %v", err)
		}
		key, err := os.ReadFile(caKey)
		if err != nil {
			return usagef("--ca-key: %v", err)
		}
		certPEM, keyPEM, err := gossip.GenerateCert(caCert, key, kind, name, hosts, time.Duration(days)*day)
		if err != nil {
			return &usageError{err}
		}
		return m.writePair(outDir, use, certPEM, keyPEM, force)
	}
	return c
}

// writePair writes <base>.pem and <base>-key.pem (the key readable by its owner only).
func (m *Main) writePair(dir, base string, certPEM, keyPEM []byte, force bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(dir, base+".pem"), filepath.Join(dir, base+"-key.pem")
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if !force {
		flags |= os.O_EXCL
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{certPath, certPEM, 0o644}, {keyPath, keyPEM, 0o600}} {
		fh, err := os.OpenFile(f.path, flags, f.mode)
		if errors.Is(err, fs.ErrExist) {
			return usagef("%s exists (use --force to overwrite)", f.path)
		}
		if err != nil {
			return err
		}
		if _, err := fh.Write(f.data); err != nil {
			fh.Close()
			return err
		}
		if err := fh.Close(); err != nil {
			return err
		}
	}
	fmt.Fprintf(m.Stdout, "wrote %s and %s\n", certPath, keyPath)
	return nil
}
