package v1alpha1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strings"

	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"wapper.dev/wapper/abi/grant"
)

var (
	percentRE  = regexp.MustCompile(`^([1-9][0-9]?|100)%$`)
	protocolRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)
	digestRE   = regexp.MustCompile(`^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$`)
	// imageRE is the OCI distribution reference grammar, simplified:
	// [HOST[:PORT]/]PATH[:TAG][@DIGEST], lower-case path components.
	imageRE = regexp.MustCompile(`^` +
		`(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?/)?` +
		`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` +
		`(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?` +
		`(?:@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,})?$`)
)

// ValidDigest reports whether d is a digest this API accepts: "sha256:" and
// 64 lowercase hex digits, or "sha512:" and 128.
func ValidDigest(d string) bool { return digestRE.MatchString(d) }

// Validate checks a (defaulted) MapperPlugin and returns every problem with
// its field path, such as "spec.module.digest". An empty list means valid.
// Call Default first: Validate reports unset limits as out of range.
func (p *MapperPlugin) Validate() field.ErrorList {
	var errs field.ErrorList
	meta := field.NewPath("metadata")
	if p.Name == "" {
		errs = append(errs, field.Required(meta.Child("name"), "a MapperPlugin needs a name"))
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(p.Name) {
			errs = append(errs, field.Invalid(meta.Child("name"), p.Name, msg))
		}
	}
	if p.Namespace != "" {
		errs = append(errs, field.Forbidden(meta.Child("namespace"), "MapperPlugin is cluster-scoped; remove the namespace"))
	}
	errs = append(errs, p.Spec.Validate(field.NewPath("spec"))...)
	return errs
}

// Validate checks a (defaulted) spec; fld is its path, usually "spec".
func (s *MapperPluginSpec) Validate(fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateProtocols(s.Protocols, fld.Child("protocols"))...)
	errs = append(errs, s.Module.Validate(fld.Child("module"))...)
	errs = append(errs, s.Grants.Validate(fld.Child("grants"))...)
	errs = append(errs, s.Limits.Validate(fld.Child("limits"))...)
	errs = append(errs, s.Rollout.Validate(fld.Child("rollout"))...)
	errs = append(errs, s.Upgrade.Validate(fld.Child("upgrade"))...)
	if s.Config != nil && s.Config.Raw != nil {
		raw := bytes.TrimSpace(s.Config.Raw)
		if len(raw) == 0 || raw[0] != '{' || !json.Valid(raw) {
			errs = append(errs, field.Invalid(fld.Child("config"), string(s.Config.Raw), "must be a JSON object, such as {} or {\"key\": \"value\"}"))
		}
	}
	return errs
}

func validateProtocols(ps []string, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(ps) == 0 {
		return append(errs, field.Required(fld, "list at least one protocol, matched against DeviceModel spec.protocol"))
	}
	seen := make(map[string]bool, len(ps))
	for i, p := range ps {
		switch {
		case p == "":
			errs = append(errs, field.Required(fld.Index(i), "a protocol name may not be empty"))
		case len(p) > 63:
			errs = append(errs, field.TooLong(fld.Index(i), p, 63))
		case !protocolRE.MatchString(p):
			errs = append(errs, field.Invalid(fld.Index(i), p, "use letters, digits, '.', '_' and '-', starting and ending with a letter or digit"))
		case seen[p]:
			errs = append(errs, field.Duplicate(fld.Index(i), p))
		}
		seen[p] = true
	}
	return errs
}

// Validate checks a Module; fld is its path, usually "spec.module".
func (m *Module) Validate(fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case m.File == "" && m.Image == "":
		errs = append(errs, field.Required(fld, "set file (relative to the host's --plugin-dir) or image (an OCI reference)"))
	case m.File != "" && m.Image != "":
		errs = append(errs, field.Invalid(fld, m.File+" / "+m.Image, "set exactly one of file and image, not both"))
	}
	if m.File != "" {
		switch {
		case strings.HasPrefix(m.File, "/"):
			errs = append(errs, field.Invalid(fld.Child("file"), m.File, "must be relative to the host's --plugin-dir, not absolute"))
		case path.Clean(m.File) != m.File || m.File == "." || m.File == ".." || strings.HasPrefix(m.File, "../"):
			errs = append(errs, field.Invalid(fld.Child("file"), m.File, "must be a clean path inside the host's --plugin-dir (no '..', '.', or doubled '/')"))
		case strings.ContainsAny(m.File, "\\\x00"):
			errs = append(errs, field.Invalid(fld.Child("file"), m.File, "may not contain a backslash or NUL"))
		}
	}
	if m.Image != "" {
		if !imageRE.MatchString(m.Image) {
			errs = append(errs, field.Invalid(fld.Child("image"), m.Image, "not an OCI reference; want REGISTRY/REPOSITORY[:TAG][@DIGEST] with a lower-case repository"))
		}
		if m.Digest == "" {
			errs = append(errs, field.Required(fld.Child("digest"), "an image needs its digest (sha256:...), so that only that exact module ever runs"))
		}
		if _, embedded, ok := strings.Cut(m.Image, "@"); ok && m.Digest != "" && embedded != m.Digest {
			errs = append(errs, field.Invalid(fld.Child("digest"), m.Digest, fmt.Sprintf("does not match the digest %s inside image", embedded)))
		}
	}
	if m.Digest != "" && !digestRE.MatchString(m.Digest) {
		errs = append(errs, field.Invalid(fld.Child("digest"), m.Digest, "want sha256: and 64 lower-case hex digits (or sha512: and 128)"))
	}
	return errs
}

// Validate checks every grant pattern; fld is its path, usually "spec.grants".
func (g *Grants) Validate(fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, s := range g.Network {
		if _, err := grant.ParseNetwork(s); err != nil {
			errs = append(errs, field.Invalid(fld.Child("network").Index(i), s, err.Error()))
		}
	}
	for i, s := range g.Listen {
		if _, err := grant.ParseListen(s); err != nil {
			errs = append(errs, field.Invalid(fld.Child("listen").Index(i), s, err.Error()))
		}
	}
	for i, s := range g.Serial {
		if err := grant.ValidateSerial(s); err != nil {
			errs = append(errs, field.Invalid(fld.Child("serial").Index(i), s, err.Error()))
		}
	}
	for i, s := range g.GPIO {
		if err := grant.ValidateGPIO(s); err != nil {
			errs = append(errs, field.Invalid(fld.Child("gpio").Index(i), s, err.Error()))
		}
	}
	for i, s := range g.Secrets {
		if err := grant.ValidateSecret(s); err != nil {
			errs = append(errs, field.Invalid(fld.Child("secrets").Index(i), s, err.Error()))
		}
	}
	for i, t := range g.TLS {
		if err := t.set().Validate(); err != nil {
			errs = append(errs, field.Invalid(fld.Child("tls").Index(i), t.Endpoint, err.Error()))
		}
	}
	return errs
}

// Validate checks that each (defaulted) limit is in range; fld is its path,
// usually "spec.limits".
func (l *Limits) Validate(fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if l.MemoryMiB < 1 || l.MemoryMiB > MaxMemoryMiB {
		errs = append(errs, field.Invalid(fld.Child("memoryMiB"), l.MemoryMiB, fmt.Sprintf("must be between 1 and %d", MaxMemoryMiB)))
	}
	if d := l.CallTimeout.Duration; d <= 0 || d > MaxCallTimeout {
		errs = append(errs, field.Invalid(fld.Child("callTimeout"), d.String(), fmt.Sprintf("must be above 0 and at most %s", MaxCallTimeout)))
	}
	if l.Instances < 1 || l.Instances > MaxInstances {
		errs = append(errs, field.Invalid(fld.Child("instances"), l.Instances, fmt.Sprintf("must be between 1 and %d", MaxInstances)))
	}
	return errs
}

// Validate checks a rollout policy; fld is its path, usually
// "spec.rollout".
func (r *Rollout) Validate(fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if mu := r.MaxUnavailable; mu != nil {
		switch {
		case mu.Type == intstr.Int && mu.IntVal < 1:
			errs = append(errs, field.Invalid(fld.Child("maxUnavailable"), mu.IntVal, "a wave moves at least 1 node"))
		case mu.Type == intstr.String && !percentRE.MatchString(mu.StrVal):
			errs = append(errs, field.Invalid(fld.Child("maxUnavailable"), mu.StrVal, "want a count (such as 2) or a percentage from 1% to 100% (such as \"25%\")"))
		}
	}
	if r.ProgressDeadlineSeconds < 0 {
		errs = append(errs, field.Invalid(fld.Child("progressDeadlineSeconds"), r.ProgressDeadlineSeconds, "must be at least 1 second"))
	}
	if r.CanaryNodeSelector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(r.CanaryNodeSelector, metav1validation.LabelSelectorValidationOptions{}, fld.Child("canaryNodeSelector"))...)
	}
	return errs
}

// Validate checks an upgrade policy; fld is its path, usually
// "spec.upgrade". An empty strategy means Hot.
func (u *Upgrade) Validate(fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch u.Strategy {
	case "", UpgradeHot, UpgradeRestart:
	default:
		errs = append(errs, field.NotSupported(fld.Child("strategy"), u.Strategy, []UpgradeStrategy{UpgradeHot, UpgradeRestart}))
	}
	if c := u.CanaryPercent; c != nil && (*c < 0 || *c > 100) {
		errs = append(errs, field.Invalid(fld.Child("canaryPercent"), *c, "must be between 0 and 100"))
	}
	return errs
}
