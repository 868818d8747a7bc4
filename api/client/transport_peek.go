//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package client

import "syscall"

// open reports whether the peer has not closed the idle connection: a peek that does not
// block finds nothing to read (EAGAIN). End of stream, data or an error mean it is not
// reusable.
func (dc *directConn) open() bool {
	if dc.raw == nil {
		return true
	}
	alive := false
	err := dc.raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true // never wait
	})
	return err == nil && alive
}
