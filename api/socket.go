package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// maxSocketPath is the longest Unix socket path Linux takes (sun_path's 108 bytes, one of
// them the terminating NUL); net.Listen reports a longer one as "invalid argument".
const maxSocketPath = 107

// socketMode lets the agent's user and group connect: a socket's permissions are its access
// control, before any token.
const socketMode = 0o660

// listenSocket listens on the Unix socket at path. A socket file already there is either
// a running agent's (something answers: an error, as for a TCP port in use) or left by one
// that died (replaced); any other file is never removed.
func listenSocket(ctx context.Context, path string) (net.Listener, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	case fi.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("%s exists and is not a socket", path)
	default:
		d := net.Dialer{Timeout: time.Second}
		c, derr := d.DialContext(ctx, "unix", path)
		if derr == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use (another agent?)", path)
		}
		if !errors.Is(derr, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%s: is it in use? %w", path, derr)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	// The mode is set after bind, so a client could connect in between with the umask's
	// mode; the directory's permissions are what guards that window.
	if err := os.Chmod(path, socketMode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// SocketPath is the Unix socket the API is also served on (Config.Socket), or "".
func (s *Server) SocketPath() string {
	if s.sock == nil {
		return ""
	}
	return s.cfg.Socket
}
