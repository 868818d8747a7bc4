package gossip

// Attribute keys of log records.
const (
	attrComponent = "component"
	attrPeer      = "peer"
	attrAddr      = "addr"
	attrSite      = "site"
	attrErr       = "err"
	attrCount     = "count"
	attrDuration  = "duration"
)
