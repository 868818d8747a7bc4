package sim

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// azureRTT is Microsoft's published table of round-trip times between Azure regions, as
// data: its citation (source, window, statistic, transcription notes) heads the file.
//
//go:embed azure_rtt.txt
var azureRTT string

// azureTable is azureRTT parsed, once per process.
var azureTable = sync.OnceValues(func() (map[[2]string]float64, error) { return parseAzureRTT(azureRTT) })

// regionOrder is the order in which regions are used: --regions n takes the first n, so
// that small runs still span continents. 40 of the table's 43 regions (Australia Central
// 2, Norway West and West US 3 sit next to others in it and are left out).
var regionOrder = []string{
	"East US", "West Europe", "Southeast Asia", "West US 2", "Japan East", "Australia East",
	"Brazil South", "UK South", "Central India", "South Africa North", "Central US",
	"Germany West Central", "Korea Central", "Canada Central", "UAE North", "East Asia",
	"North Europe", "South Central US", "France Central", "Sweden Central", "West US",
	"Australia Southeast", "Japan West", "Switzerland North", "East US 2", "Qatar Central",
	"South India", "North Central US", "Norway East", "Canada East", "Korea South",
	"West Central US", "UK West", "France South", "Germany North", "West India",
	"Australia Central", "Switzerland West", "UAE Central", "South Africa West",
}

// intraRegionRTT is the round trip between two nodes of one region.
const intraRegionRTT = time.Millisecond

// MaxRegions is how many regions the table provides.
var MaxRegions = len(regionOrder)

// rttTable holds the round trip between every pair of the first n regions of regionOrder:
// the mean of both directions of the published table, intraRegionRTT on the diagonal.
type rttTable struct {
	names []string
	rtt   [][]time.Duration
}

func loadRTT(n int) (*rttTable, error) {
	if n < 1 || n > len(regionOrder) {
		return nil, fmt.Errorf("regions must be 1..%d (the published table's), got %d", len(regionOrder), n)
	}
	raw, err := azureTable()
	if err != nil {
		return nil, err
	}
	t := &rttTable{names: regionOrder[:n], rtt: make([][]time.Duration, n)}
	for i, a := range t.names {
		t.rtt[i] = make([]time.Duration, n)
		for j, b := range t.names {
			if i == j {
				t.rtt[i][j] = intraRegionRTT
				continue
			}
			ab, okAB := raw[[2]string{a, b}]
			ba, okBA := raw[[2]string{b, a}]
			var ms float64
			switch {
			case okAB && okBA:
				ms = (ab + ba) / 2
			case okAB:
				ms = ab
			case okBA:
				ms = ba
			default:
				return nil, fmt.Errorf("no round trip between %s and %s in the table", a, b)
			}
			t.rtt[i][j] = time.Duration(ms * float64(time.Millisecond))
		}
	}
	return t, nil
}

// parseAzureRTT reads the table's blocks into (source, destination) -> milliseconds. Lines
// starting with # are comments; a blank line ends a block. Empty cells (a region to
// itself) are skipped.
func parseAzureRTT(s string) (map[[2]string]float64, error) {
	out := map[[2]string]float64{}
	var cols []string
	for ln, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		if line == "" {
			cols = nil
			continue
		}
		cells := strings.Split(strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|"), "|")
		if cells[0] == "Source" {
			cols = cells[1:]
			continue
		}
		if len(cells) != len(cols)+1 {
			return nil, fmt.Errorf("latency table line %d: %d cells for %d columns", ln+1, len(cells)-1, len(cols))
		}
		for i, c := range cells[1:] {
			if c == "" {
				continue
			}
			ms, err := strconv.ParseFloat(c, 64)
			if err != nil || !(ms > 0 && ms < 10_000) { // NaN and Inf parse too
				return nil, fmt.Errorf("latency table line %d: bad cell %q", ln+1, c)
			}
			out[[2]string{cells[0], cols[i]}] = ms
		}
	}
	return out, nil
}
