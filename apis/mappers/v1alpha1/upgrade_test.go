package v1alpha1_test

import (
	"strings"
	"testing"

	v1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
)

func int32p(v int32) *int32 { return &v }

// TestUpgradeDefaults: an unset policy is Hot with a 10% canary, and an
// explicit 0% is kept (one device still goes first).
func TestUpgradeDefaults(t *testing.T) {
	var u v1alpha1.Upgrade
	u.Default()
	if u.Strategy != v1alpha1.UpgradeHot || u.CanaryPercent == nil || *u.CanaryPercent != 10 {
		t.Fatalf("defaulted: %+v", u)
	}
	zero := v1alpha1.Upgrade{Strategy: v1alpha1.UpgradeRestart, CanaryPercent: int32p(0)}
	zero.Default()
	if zero.Strategy != v1alpha1.UpgradeRestart || *zero.CanaryPercent != 0 {
		t.Fatalf("explicit values changed: %+v", zero)
	}
	p := decode(t, issueYAML)
	p.Default()
	if p.Spec.Upgrade.Strategy != v1alpha1.UpgradeHot || *p.Spec.Upgrade.CanaryPercent != 10 {
		t.Fatalf("MapperPlugin.Default left spec.upgrade %+v", p.Spec.Upgrade)
	}
}

func TestUpgradeCanary(t *testing.T) {
	for _, c := range []struct {
		pct  *int32
		n    int
		want int
	}{
		{nil, 0, 0}, {nil, 1, 1}, {nil, 10, 1}, {nil, 11, 2}, {nil, 100, 10},
		{int32p(0), 50, 1}, {int32p(100), 7, 7}, {int32p(50), 3, 2}, {int32p(25), 100, 25},
	} {
		if got := (v1alpha1.Upgrade{CanaryPercent: c.pct}).Canary(c.n); got != c.want {
			t.Errorf("Canary(%d) with share %v: %d, want %d", c.n, c.pct, got, c.want)
		}
	}
}

func TestUpgradeValidation(t *testing.T) {
	p := decode(t, issueYAML)
	p.Default()
	if errs := p.Validate(); len(errs) > 0 {
		t.Fatalf("defaulted plugin invalid: %v", errs)
	}
	p.Spec.Upgrade = v1alpha1.Upgrade{Strategy: "Rolling", CanaryPercent: int32p(101)}
	errs := p.Validate()
	text := errs.ToAggregate().Error()
	for _, want := range []string{"spec.upgrade.strategy", `"Hot"`, "spec.upgrade.canaryPercent", "between 0 and 100"} {
		if !strings.Contains(text, want) {
			t.Errorf("errors %q lack %q", text, want)
		}
	}
	p.Spec.Upgrade = v1alpha1.Upgrade{Strategy: v1alpha1.UpgradeHot, CanaryPercent: int32p(-1)}
	if errs := p.Validate(); len(errs) != 1 {
		t.Errorf("negative canary: %v", errs)
	}
}

// TestUpgradeYAML: the policy decodes from the CRD's field names.
func TestUpgradeYAML(t *testing.T) {
	doc := strings.Replace(issueYAML, "  config: {}\n", "  config: {}\n  upgrade: {strategy: Restart, canaryPercent: 25}\n", 1)
	p := decode(t, doc)
	if p.Spec.Upgrade.Strategy != v1alpha1.UpgradeRestart || *p.Spec.Upgrade.CanaryPercent != 25 {
		t.Fatalf("decoded %+v", p.Spec.Upgrade)
	}
}
