package token

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
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
		pat := asciiLower(strings.TrimSpace(raw))
		if pat == "" {
			continue
		}
		if !isASCII(pat) {
			return HostPolicy{}, fmt.Errorf("allowed token host %q: host names must be plain ASCII; write an internationalized domain name in its xn-- form", raw)
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
	_, ok := p.Check(rawURL)
	return ok
}

// Check judges the host that net/http will dial, and verify the certificate of, for rawURL, and
// returns rawURL rewritten to that ASCII host, which is what the caller must send the request to.
//
// The judged name is never the URL's text: url.Parse percent-decodes the host, and net/http maps
// a non-ASCII host to ASCII with IDNA's lookup profile before it dials and before it sets the TLS
// server name. Lowercasing the text with Unicode rules (strings.ToLower) judged another name
// than the one dialled: "x.azuredatabr\u0130cks.net" lowercased to "…databricks.net", an allowed
// suffix, while the connection went to "x.xn--azuredatabricks-eqi.net", outside Databricks'
// domain. Check applies the transport's mapping first and judges its ASCII result; returning the
// URL with that ASCII host means net/http has nothing left to map (it leaves ASCII hosts as they
// are), so the name judged here is the name dialled, whichever IDNA tables net/http carries.
func (p HostPolicy) Check(rawURL string) (string, bool) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "", false
	}
	host, ok := DialHost(u.Hostname())
	if !ok || !p.allowsHost(host) {
		return "", false
	}
	if host == u.Hostname() {
		return rawURL, true
	}
	switch port := u.Port(); {
	case port != "":
		u.Host = net.JoinHostPort(host, port)
	case strings.Contains(host, ":"):
		u.Host = "[" + host + "]"
	default:
		u.Host = host
	}
	return u.String(), true
}

// DialHost returns the ASCII name net/http dials for a URL host (as url.URL.Hostname returns it,
// percent-decoded, IPv6 without brackets): a non-ASCII name mapped with IDNA's lookup profile, as
// net/http does, then lowercased; an IPv6 address in its canonical spelling. ok is false for a
// name IDNA refuses or that is still not plain ASCII.
func DialHost(hostname string) (string, bool) {
	if hostname == "" {
		return "", false
	}
	if !isASCII(hostname) {
		ascii, err := idna.Lookup.ToASCII(hostname)
		if err != nil || !isASCII(ascii) {
			return "", false
		}
		hostname = ascii
	}
	host := asciiLower(hostname)
	if ip := net.ParseIP(host); ip != nil && strings.Contains(host, ":") {
		host = ip.String() // one spelling per IPv6 address: [0:0::1] is [::1]
	}
	return host, true
}

func (p HostPolicy) allowsHost(host string) bool {
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

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// asciiLower lowercases A-Z only: Unicode case mapping is what turned one host name into another.
func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}
