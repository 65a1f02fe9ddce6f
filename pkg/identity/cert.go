package identity

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
)

// oidSubjectAltName is the X.509 subjectAltName extension.
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// uriTag is the GeneralName tag of a uniformResourceIdentifier.
const uriTag = 6

// CertificateURIs returns the URI SANs of a certificate as they are
// written in it. Go's x509 hands them out parsed (url.URL), and printing
// a parsed URL again lower-cases the scheme and may re-encode the path:
// "SPIFFE://..." would come back as "spiffe://...". Envoy compares the
// raw string; so must the xDS check, or the two would read one
// certificate differently. A certificate built in memory without its
// extension (a test's) falls back to the parsed URIs.
func CertificateURIs(cert *x509.Certificate) []string {
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidSubjectAltName) {
			return rawURIs(ext.Value)
		}
	}
	out := make([]string, 0, len(cert.URIs))
	for _, u := range cert.URIs {
		out = append(out, u.String())
	}
	return out
}

// rawURIs reads the uniformResourceIdentifier names of a DER
// subjectAltName extension; a malformed one has none.
func rawURIs(der []byte) []string {
	var seq asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) > 0 || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return nil
	}
	var out []string
	for data := seq.Bytes; len(data) > 0; {
		var name asn1.RawValue
		var err error
		if data, err = asn1.Unmarshal(data, &name); err != nil {
			return nil
		}
		if name.Class == asn1.ClassContextSpecific && name.Tag == uriTag && !name.IsCompound {
			out = append(out, string(name.Bytes))
		}
	}
	return out
}

// SubjectAltNameExtension is the DER subjectAltName extension holding
// uris exactly as given: for tests that need a certificate carrying a URI
// Go's x509 would normalize.
func SubjectAltNameExtension(uris ...string) pkix.Extension {
	var names []asn1.RawValue
	for _, u := range uris {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: uriTag, Bytes: []byte(u)})
	}
	der, _ := asn1.Marshal(names) // RawValues always marshal
	return pkix.Extension{Id: oidSubjectAltName, Value: der}
}
