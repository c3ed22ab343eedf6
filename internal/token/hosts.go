package token

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// DefaultAllowedTokenHosts are the public token endpoints of Databricks (all clouds) and of
// Microsoft Entra ID (public, US Government and China clouds). The manager sends client
// credentials nowhere else unless --allowed-token-hosts says so.
const DefaultAllowedTokenHosts = "*.azuredatabricks.net,*.databricks.azure.us,*.databricks.azure.cn," +
	"*.cloud.databricks.com,*.gcp.databricks.com,*.cloud.databricks.us," +
	"login.microsoftonline.com,login.microsoftonline.us,login.chinacloudapi.cn,login.partner.microsoftonline.cn"

// HostPolicy decides which hosts may receive client credentials. A pattern is a host name, an IP
// address (IPv6 in brackets, as in a URL: [::1]), or "*.example.com" matching any subdomain of
// example.com (not example.com itself). Ports are ignored.
type HostPolicy struct {
	exact    map[string]bool
	suffixes []string
}

// ParseHostPolicy parses a comma-separated list of host patterns.
func ParseHostPolicy(list string) (HostPolicy, error) {
	p := HostPolicy{exact: map[string]bool{}}
	for _, raw := range strings.Split(list, ",") {
		pat := strings.ToLower(strings.TrimSpace(raw))
		if pat == "" {
			continue
		}
		if inner, ok := strings.CutPrefix(pat, "["); ok {
			ip := net.ParseIP(strings.TrimSuffix(inner, "]"))
			if !strings.HasSuffix(inner, "]") || ip == nil || ip.To4() != nil {
				return HostPolicy{}, fmt.Errorf("allowed token host %q: want an IPv6 address in brackets such as [::1], without port or path", raw)
			}
			p.exact[ip.String()] = true
			continue
		}
		if strings.ContainsAny(pat, "/:@ []") {
			return HostPolicy{}, fmt.Errorf("allowed token host %q: want a host name such as login.microsoftonline.com or *.azuredatabricks.net, without scheme, port or path", raw)
		}
		if suffix, ok := strings.CutPrefix(pat, "*."); ok {
			if suffix == "" || strings.Contains(suffix, "*") {
				return HostPolicy{}, fmt.Errorf("allowed token host %q: a wildcard must look like *.example.com", raw)
			}
			p.suffixes = append(p.suffixes, "."+suffix)
			continue
		}
		if strings.Contains(pat, "*") {
			return HostPolicy{}, fmt.Errorf("allowed token host %q: a wildcard must look like *.example.com", raw)
		}
		p.exact[pat] = true
	}
	if len(p.exact) == 0 && len(p.suffixes) == 0 {
		return HostPolicy{}, fmt.Errorf("allowed token hosts %q: the list is empty", list)
	}
	return p, nil
}

// MustParseHostPolicy is ParseHostPolicy for constants; it panics on error.
func MustParseHostPolicy(list string) HostPolicy {
	p, err := ParseHostPolicy(list)
	if err != nil {
		panic(err)
	}
	return p
}

// Allows reports whether credentials may be sent to rawURL's host.
func (p HostPolicy) Allows(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return false
	}
	if ip := net.ParseIP(host); ip != nil && strings.Contains(host, ":") {
		host = ip.String() // one spelling per IPv6 address: [0:0::1] is [::1]
	}
	if p.exact[host] {
		return true
	}
	for _, s := range p.suffixes {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}
