package tmpdeps

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/cockroachdb/pebble/v2"
	_ "github.com/hashicorp/memberlist"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/quic-go/quic-go"
	_ "github.com/vmihailenco/msgpack/v5"
	_ "modernc.org/sqlite"
)
