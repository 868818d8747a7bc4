package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/patinadb/patina/api/client"
)

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		cancel(fmt.Errorf("%w: %v", errSignal, sig))
		<-sigs
		fmt.Fprintln(os.Stderr, "patina: second signal, exiting at once")
		os.Exit(1)
	}()
	setProcs(os.Getenv)
	m := &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	stopProfiles := startProfiles(os.Getenv)
	err := m.Run(ctx, os.Args[1:])
	stopProfiles()
	if err != nil {
		fmt.Fprintln(os.Stderr, "patina: "+oneLine(err.Error()))
	}
	os.Exit(exitCode(err))
}

// Main is the program with its environment made explicit, so that tests run it in-process.
type Main struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads environment variables (os.Getenv in the binary).
	Getenv func(string) string
	// onAgentReady, when set, is called with the open agent (tests).
	onAgentReady func(*Agent)
}

// Run runs the command line args (without the program name) until it is done or ctx ends.
func (m *Main) Run(ctx context.Context, args []string) error {
	if m.Getenv == nil {
		m.Getenv = func(string) string { return "" }
	}
	if m.Stdin == nil {
		m.Stdin = strings.NewReader("")
	}
	root := m.rootCmd()
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// errSignal is the cause of the run context's end when a signal stopped the program.
var errSignal = errors.New("signal")

// usageError is bad usage or bad input: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// exitCode maps an error to the exit code of docs/DESIGN.md section 8.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	// An API answer of 4xx means the request (the user's input) was bad; 5xx and network
	// failures are runtime failures.
	if st := client.StatusOf(err); st >= 400 && st < 500 {
		return 2
	}
	return 1
}

// oneLine keeps an error on one line of stderr, as scripts expect.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
