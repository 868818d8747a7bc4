package gossip

import "errors"

// Sentinel errors of the gossip package. Callers compare with errors.Is.
var (
	// ErrConfig wraps every configuration problem found by Config.Validate.
	ErrConfig = errors.New("gossip: bad config")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("gossip: closed")
	// ErrWrongCluster means a peer belongs to another cluster id; it is refused.
	ErrWrongCluster = errors.New("gossip: peer of another cluster")
	// ErrBusy means a peer refused a sync because it serves too many; try another peer.
	ErrBusy = errors.New("gossip: peer busy")
	// ErrProtocol wraps malformed or unexpected frames from a peer.
	ErrProtocol = errors.New("gossip: protocol error")
	// ErrFaultDisabled means the fault hook was not enabled in the config at start.
	ErrFaultDisabled = errors.New("gossip: fault hook not enabled")
)
