// Package manifest loads Device, DeviceModel and MapperPlugin YAML from a
// folder, validates it, and watches the folder for changes.
//
// Every *.yaml, *.yml and *.json file holds one document or several
// (separated by "---"). Devices and models are KubeEdge's
// devices.kubeedge.io/v1beta1 types, unchanged; MapperPlugin is
// mappers.wapper.dev/v1alpha1. A document that cannot be decoded, has an
// unknown kind, fails validation or repeats an object already defined in an
// earlier file (files are read in name order) is left out of the [Set] and
// reported as a [Problem] with its file, object, field and reason. The good
// documents load regardless.
package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	"k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/apis/mappers/v1alpha1"
)

// API groups and kinds this package reads.
const (
	DevicesAPIVersion = "devices.kubeedge.io/v1beta1"
	PluginsAPIVersion = "mappers.wapper.dev/v1alpha1"
	KindDevice        = "Device"
	KindDeviceModel   = "DeviceModel"
	KindMapperPlugin  = "MapperPlugin"
)

// Set is the good objects of a folder. Origin maps "Kind/key" (key is
// namespace/name, or the name of a MapperPlugin) to the file it came from.
type Set struct {
	Devices  []*v1beta1.Device
	Models   []*v1beta1.DeviceModel
	Plugins  []*v1alpha1.MapperPlugin
	Origin   map[string]string
	Problems []Problem
}

// Problem is one bad document.
type Problem struct {
	// File is the path of the file, Doc the document's index in it (from 1).
	File string `json:"file"`
	Doc  int    `json:"doc,omitempty"`
	// Kind and Name identify the object when they could be read.
	Kind string `json:"kind,omitempty"`
	Name string `json:"name,omitempty"`
	// Field is the path of the bad field, when one is to blame.
	Field string `json:"field,omitempty"`
	// Reason says what is wrong and what to do.
	Reason string `json:"reason"`
}

func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Doc > 0 {
		fmt.Fprintf(&b, " (document %d)", p.Doc)
	}
	if p.Kind != "" {
		fmt.Fprintf(&b, ": %s %s", p.Kind, p.Name)
	}
	if p.Field != "" {
		fmt.Fprintf(&b, ": field %s", p.Field)
	}
	b.WriteString(": ")
	b.WriteString(p.Reason)
	return b.String()
}

// Key returns "Kind/key" for an object, the key of Set.Origin.
func Key(kind, namespace, name string) string {
	if namespace == "" {
		return kind + "/" + name
	}
	return kind + "/" + namespace + "/" + name
}

// Load reads every manifest file in dir. Only an unreadable folder is an
// error; bad documents are in Set.Problems.
func Load(dir string) (*Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read manifest folder: %w (check --manifests)", err)
	}
	var files []string
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") || !IsManifestFile(e.Name()) {
			continue
		}
		files = append(files, filepath.Join(dir, e.Name()))
	}
	sort.Strings(files)
	set := &Set{Origin: map[string]string{}}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			set.Problems = append(set.Problems, Problem{File: f, Reason: "cannot read: " + err.Error()})
			continue
		}
		set.add(f, data)
	}
	return set, nil
}

// IsManifestFile reports whether a file name has a manifest extension.
func IsManifestFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// Parse reads the documents of one file's contents into a Set.
func Parse(file string, data []byte) *Set {
	set := &Set{Origin: map[string]string{}}
	set.add(file, data)
	return set
}

func (s *Set) add(file string, data []byte) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			s.Problems = append(s.Problems, Problem{File: file, Doc: doc, Reason: "cannot split YAML documents: " + err.Error()})
			return
		}
		if len(bytes.TrimSpace(raw)) == 0 || isOnlyComments(raw) {
			doc--
			continue
		}
		if p := s.addDoc(file, doc, raw); p != nil {
			s.Problems = append(s.Problems, *p)
		}
	}
}

func isOnlyComments(b []byte) bool {
	for _, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && !bytes.Equal(line, []byte("---")) {
			return false
		}
	}
	return true
}

func (s *Set) addDoc(file string, doc int, raw []byte) *Problem {
	prob := func(kind, name, fld, format string, args ...any) *Problem {
		return &Problem{File: file, Doc: doc, Kind: kind, Name: name, Field: fld, Reason: fmt.Sprintf(format, args...)}
	}
	var head struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(raw, &head); err != nil {
		return prob("", "", "", "not valid YAML: %v", err)
	}
	name := head.Metadata.Name
	// The status of a resource is the host's to fill in; a manifest's own
	// status (an exported object) is ignored rather than decoded strictly.
	body, err := dropStatus(raw)
	if err != nil {
		return prob(head.Kind, name, "", "not valid YAML: %v", err)
	}
	switch {
	case head.APIVersion == DevicesAPIVersion && head.Kind == KindDevice:
		var d v1beta1.Device
		if err := yaml.UnmarshalStrict(body, &d); err != nil {
			return prob(head.Kind, name, "", "cannot decode: %v", err)
		}
		if d.Namespace == "" {
			d.Namespace = "default"
		}
		if errs := ValidateDevice(&d); len(errs) > 0 {
			return fieldProblem(file, doc, head.Kind, d.Namespace+"/"+d.Name, errs)
		}
		return s.claim(file, doc, KindDevice, d.Namespace, d.Name, func() { s.Devices = append(s.Devices, &d) })
	case head.APIVersion == DevicesAPIVersion && head.Kind == KindDeviceModel:
		var m v1beta1.DeviceModel
		if err := yaml.UnmarshalStrict(body, &m); err != nil {
			return prob(head.Kind, name, "", "cannot decode: %v", err)
		}
		if m.Namespace == "" {
			m.Namespace = "default"
		}
		if errs := ValidateModel(&m); len(errs) > 0 {
			return fieldProblem(file, doc, head.Kind, m.Namespace+"/"+m.Name, errs)
		}
		return s.claim(file, doc, KindDeviceModel, m.Namespace, m.Name, func() { s.Models = append(s.Models, &m) })
	case head.APIVersion == PluginsAPIVersion && head.Kind == KindMapperPlugin:
		var p v1alpha1.MapperPlugin
		if err := yaml.UnmarshalStrict(body, &p); err != nil {
			return prob(head.Kind, name, "", "cannot decode: %v", err)
		}
		p.Default()
		if errs := p.Validate(); len(errs) > 0 {
			return fieldProblem(file, doc, head.Kind, p.Name, errs)
		}
		return s.claim(file, doc, KindMapperPlugin, "", p.Name, func() { s.Plugins = append(s.Plugins, &p) })
	case head.APIVersion == "" || head.Kind == "":
		return prob(head.Kind, name, "apiVersion", "a manifest needs apiVersion and kind (%s Device or DeviceModel, %s MapperPlugin)", DevicesAPIVersion, PluginsAPIVersion)
	default:
		return prob(head.Kind, name, "kind", "unknown kind %q of apiVersion %q; wapper-host reads Device and DeviceModel (%s) and MapperPlugin (%s)", head.Kind, head.APIVersion, DevicesAPIVersion, PluginsAPIVersion)
	}
}

func (s *Set) claim(file string, doc int, kind, ns, name string, add func()) *Problem {
	k := Key(kind, ns, name)
	if prev, dup := s.Origin[k]; dup {
		id := name
		if ns != "" {
			id = ns + "/" + name
		}
		return &Problem{File: file, Doc: doc, Kind: kind, Name: id, Field: "metadata.name",
			Reason: fmt.Sprintf("conflict: %s %s is already defined in %s; this copy is ignored (rename it or remove one)", kind, id, prev)}
	}
	s.Origin[k] = file
	add()
	return nil
}

func fieldProblem(file string, doc int, kind, name string, errs field.ErrorList) *Problem {
	first := errs[0]
	reason := first.ErrorBody()
	if len(errs) > 1 {
		var more []string
		for _, e := range errs[1:] {
			more = append(more, e.Error())
		}
		reason += "; also: " + strings.Join(more, "; ")
	}
	return &Problem{File: file, Doc: doc, Kind: kind, Name: name, Field: first.Field, Reason: reason}
}

func dropStatus(raw []byte) ([]byte, error) {
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if _, ok := m["status"]; !ok {
		return raw, nil
	}
	delete(m, "status")
	return yaml.Marshal(m)
}

// ValidateDevice checks a Device on its own (its model is checked when the
// host puts them together: the properties it names, and methods'
// propertyNames when spec.properties is empty).
func ValidateDevice(d *v1beta1.Device) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateMeta(d.Name, d.Namespace, field.NewPath("metadata"))...)
	spec := field.NewPath("spec")
	if d.Spec.DeviceModelRef == nil || d.Spec.DeviceModelRef.Name == "" {
		errs = append(errs, field.Required(spec.Child("deviceModelRef", "name"), "a Device names its DeviceModel"))
	}
	seen := map[string]bool{}
	for i, p := range d.Spec.Properties {
		fp := spec.Child("properties").Index(i)
		if p.Name == "" {
			errs = append(errs, field.Required(fp.Child("name"), ""))
		} else if seen[p.Name] {
			errs = append(errs, field.Duplicate(fp.Child("name"), p.Name))
		}
		seen[p.Name] = true
		if p.CollectCycle < 0 {
			errs = append(errs, field.Invalid(fp.Child("collectCycle"), p.CollectCycle, "milliseconds, zero or more"))
		}
		if p.ReportCycle < 0 {
			errs = append(errs, field.Invalid(fp.Child("reportCycle"), p.ReportCycle, "milliseconds, zero or more"))
		}
		if pm := p.PushMethod; pm != nil {
			if h := pm.HTTP; h != nil {
				if h.HostName == "" {
					errs = append(errs, field.Required(fp.Child("pushMethod", "http", "hostName"), "the endpoint to POST readings to, such as http://127.0.0.1"))
				}
				if h.Port < 0 || h.Port > 65535 {
					errs = append(errs, field.Invalid(fp.Child("pushMethod", "http", "port"), h.Port, "a TCP port"))
				}
			}
			if m := pm.MQTT; m != nil {
				if m.Topic == "" {
					errs = append(errs, field.Required(fp.Child("pushMethod", "mqtt", "topic"), ""))
				} else if strings.ContainsAny(m.Topic, "+#") {
					errs = append(errs, field.Invalid(fp.Child("pushMethod", "mqtt", "topic"), m.Topic, "a topic to publish to cannot hold the wildcards + or #"))
				}
				if m.QoS < 0 || m.QoS > 2 {
					errs = append(errs, field.Invalid(fp.Child("pushMethod", "mqtt", "qos"), m.QoS, "0, 1 or 2"))
				}
			}
		}
	}
	mseen := map[string]bool{}
	for i, m := range d.Spec.Methods {
		fm := spec.Child("methods").Index(i)
		if m.Name == "" {
			errs = append(errs, field.Required(fm.Child("name"), ""))
		} else if mseen[m.Name] {
			errs = append(errs, field.Duplicate(fm.Child("name"), m.Name))
		}
		mseen[m.Name] = true
		// A Device that lists no properties runs all of its model's;
		// the host checks those against the model.
		for j, pn := range m.PropertyNames {
			if len(d.Spec.Properties) > 0 && !seen[pn] {
				errs = append(errs, field.NotFound(fm.Child("propertyNames").Index(j), pn))
			}
		}
	}
	return errs
}

// ValidateModel checks a DeviceModel.
func ValidateModel(m *v1beta1.DeviceModel) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateMeta(m.Name, m.Namespace, field.NewPath("metadata"))...)
	spec := field.NewPath("spec")
	if m.Spec.Protocol == "" {
		errs = append(errs, field.Required(spec.Child("protocol"), "the protocol selects the MapperPlugin that serves the model"))
	}
	seen := map[string]bool{}
	for i, p := range m.Spec.Properties {
		fp := spec.Child("properties").Index(i)
		if p.Name == "" {
			errs = append(errs, field.Required(fp.Child("name"), ""))
		} else if seen[p.Name] {
			errs = append(errs, field.Duplicate(fp.Child("name"), p.Name))
		}
		seen[p.Name] = true
		if _, ok := abi.ParseType(string(p.Type)); !ok {
			errs = append(errs, field.NotSupported(fp.Child("type"), string(p.Type), []string{"INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES", "STREAM"}))
		}
		switch p.AccessMode {
		case v1beta1.ReadWrite, v1beta1.ReadOnly, "":
		default:
			errs = append(errs, field.NotSupported(fp.Child("accessMode"), string(p.AccessMode), []string{"ReadWrite", "ReadOnly"}))
		}
	}
	return errs
}

func validateMeta(name, ns string, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if name == "" {
		return append(errs, field.Required(fld.Child("name"), ""))
	}
	for _, msg := range validation.NameIsDNSSubdomain(name, false) {
		errs = append(errs, field.Invalid(fld.Child("name"), name, msg))
	}
	if ns != "" {
		for _, msg := range validation.ValidateNamespaceName(ns, false) {
			errs = append(errs, field.Invalid(fld.Child("namespace"), ns, msg))
		}
	}
	return errs
}
