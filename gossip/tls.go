package gossip

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// alpn names the wire protocol; a peer speaking anything else fails the handshake.
const alpn = "patina-gossip/1"

// tlsConfigs builds the server and client TLS configs of the QUIC transport. insecure is
// true when peers are not verified (no CA configured).
func tlsConfigs(c TLSConfig) (server, client *tls.Config, insecure bool, err error) {
	var cert tls.Certificate
	if c.CertFile != "" {
		cert, err = tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, nil, false, fmt.Errorf("load tls cert: %w", err)
		}
	} else {
		certPEM, keyPEM, err := selfSigned()
		if err != nil {
			return nil, nil, false, err
		}
		if cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
			return nil, nil, false, fmt.Errorf("ephemeral cert: %w", err)
		}
	}
	clientCert := cert
	if c.ClientCertFile != "" {
		if clientCert, err = tls.LoadX509KeyPair(c.ClientCertFile, c.ClientKeyFile); err != nil {
			return nil, nil, false, fmt.Errorf("load tls client cert: %w", err)
		}
	}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{alpn},
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{clientCert},
		NextProtos:   []string{alpn},
		// Peers are dialed by the address they advertise, which certificates rarely name;
		// trust comes from the CA chain (checked in VerifyPeerCertificate) instead.
		InsecureSkipVerify: true,
	}
	if c.CAFile == "" {
		return server, client, true, nil
	}
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, nil, false, fmt.Errorf("read tls ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, false, fmt.Errorf("tls ca %s: no PEM certificate", c.CAFile)
	}
	server.ClientAuth = tls.RequireAndVerifyClientCert
	server.ClientCAs = pool
	client.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		return verifyChain(raw, pool, x509.ExtKeyUsageServerAuth)
	}
	return server, client, false, nil
}

// verifyChain checks a peer's chain against the CA without a hostname check.
func verifyChain(raw [][]byte, roots *x509.CertPool, usage x509.ExtKeyUsage) error {
	if len(raw) == 0 {
		return errNoPeerCert
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return fmt.Errorf("tls: peer certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		return fmt.Errorf("tls: peer certificate: %w", err)
	}
	return nil
}

// selfSigned makes an ephemeral certificate for loopback development.
func selfSigned() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ephemeral key: %w", err)
	}
	tmpl, err := certTemplate("patina ephemeral", []string{"localhost", "127.0.0.1"}, 365*24*time.Hour)
	if err != nil {
		return nil, nil, err
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("ephemeral cert: %w", err)
	}
	return encodePair(der, key)
}

// GenerateCA makes a new certificate authority for a cluster's QUIC transport and returns
// its certificate and private key in PEM form (`patina tls ca`).
func GenerateCA(commonName string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		return nil, nil, errors.New("tls ca: validity must be positive")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tls ca key: %w", err)
	}
	tmpl, err := certTemplate(commonName, nil, validity)
	if err != nil {
		return nil, nil, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls ca cert: %w", err)
	}
	return encodePair(der, key)
}

// CertKind says what a generated certificate is for.
type CertKind int

const (
	// ServerCert is a node certificate: valid for serving and for dialing peers.
	ServerCert CertKind = iota
	// ClientCert only dials (e.g. a separate client identity for a node).
	ClientCert
)

// GenerateCert makes a certificate signed by the CA given in PEM form (`patina tls server`
// and `patina tls client`). hosts are DNS names or IP addresses for the SAN.
func GenerateCert(caCertPEM, caKeyPEM []byte, kind CertKind, commonName string, hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		return nil, nil, errors.New("tls cert: validity must be positive")
	}
	ca, err := tls.X509KeyPair(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("tls cert: load ca: %w", err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("tls cert: parse ca: %w", err)
	}
	if !caCert.IsCA {
		return nil, nil, errors.New("tls cert: the given ca certificate is not a CA")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tls cert key: %w", err)
	}
	tmpl, err := certTemplate(commonName, hosts, validity)
	if err != nil {
		return nil, nil, err
	}
	switch kind {
	case ServerCert:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case ClientCert:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		return nil, nil, fmt.Errorf("tls cert: unknown kind %d", kind)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("tls cert: sign: %w", err)
	}
	return encodePair(der, key)
}

func certTemplate(cn string, hosts []string, validity time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, fmt.Errorf("tls serial: %w", err)
	}
	now := time.Now()
	t := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"patina"}},
		NotBefore:    now.Add(-time.Hour), // tolerate small clock skew between nodes
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else if h != "" {
			t.DNSNames = append(t.DNSNames, h)
		}
	}
	return t, nil
}

func encodePair(der []byte, key *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: marshal key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	return certPEM, keyPEM, nil
}
