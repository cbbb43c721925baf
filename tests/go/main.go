// fakecf plays the cf CLI's side of the plugin protocol for the integration tests.
//
// It starts a Go net/rpc server on 127.0.0.1:0 with a receiver named CliRpcCmd that has the
// cf CLI's 30 plugin methods with their real argument and reply types
// (plugin/rpc/cli_rpc_server.go), launches the plugin binary exactly as cf does
// (`<plugin> <port> <args...>`), waits for it, and prints one JSON report on stdout:
// exit code, captured stdout/stderr, every RPC call received (decoded by Go's own gob
// decoder) and the PluginMetadata if the plugin sent one.
//
// With -cf-like it behaves as the real cf CLI (7.x, plugin/rpc/run_plugin.go) instead: the
// plugin runs with fakecf's own stdin/stdout/stderr, in fakecf's process group, and fakecf
// installs no signal handler, so SIGINT (Ctrl-C on a terminal reaches the whole group) ends
// fakecf and its RPC server at once while the plugin lives on. No report is printed; fakecf
// exits 1 if the plugin failed (as cf does). -pid-file names a file that gets
// "plugin-pid: N" once the plugin has started.
//
// Usage: fakecf [flags] <plugin-binary> <args after the port...>
// Standard library only (Go >= 1.19).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// ---- plugin.PluginMetadata (cli: plugin/plugin.go) ----

type VersionType struct {
	Major int
	Minor int
	Build int
}

type PluginMetadata struct {
	Name           string
	Version        VersionType
	LibraryVersion VersionType
	MinCliVersion  VersionType
	Commands       []Command
}

type Usage struct {
	Usage   string
	Options map[string]string
}

type Command struct {
	Name         string
	Alias        string
	HelpText     string
	UsageDetails Usage
}

// ---- plugin_models (cli: plugin/models/*.go) ----

type Organization struct{ OrganizationFields }

type OrganizationFields struct {
	Guid            string
	Name            string
	QuotaDefinition QuotaFields
}

type QuotaFields struct {
	Guid                    string
	Name                    string
	MemoryLimit             int64
	InstanceMemoryLimit     int64
	RoutesLimit             int
	ServicesLimit           int
	NonBasicServicesAllowed bool
}

type Space struct{ SpaceFields }

type SpaceFields struct {
	Guid string
	Name string
}

type GetAppModel struct {
	Guid                 string
	Name                 string
	BuildpackUrl         string
	Command              string
	DetectedStartCommand string
	DiskQuota            int64
	EnvironmentVars      map[string]interface{}
	InstanceCount        int
	Memory               int64
	RunningInstances     int
	HealthCheckTimeout   int
	State                string
	SpaceGuid            string
	PackageUpdatedAt     *time.Time
	PackageState         string
	StagingFailedReason  string
	Stack                *GetApp_Stack
	Instances            []GetApp_AppInstanceFields
	Routes               []GetApp_RouteSummary
	Services             []GetApp_ServiceSummary
}

type GetApp_AppInstanceFields struct {
	State     string
	Details   string
	Since     time.Time
	CpuUsage  float64
	DiskQuota int64
	DiskUsage int64
	MemQuota  int64
	MemUsage  int64
}

type GetApp_Stack struct{ Guid, Name, Description string }

type GetApp_RouteSummary struct {
	Guid   string
	Host   string
	Domain GetApp_DomainFields
	Path   string
	Port   int
}

type GetApp_DomainFields struct{ Guid, Name string }
type GetApp_ServiceSummary struct{ Guid, Name string }

type GetAppsModel struct {
	Name             string
	Guid             string
	State            string
	TotalInstances   int
	RunningInstances int
	Memory           int64
	DiskQuota        int64
	Routes           []GetAppsRouteSummary
}

type GetAppsRouteSummary struct {
	Guid   string
	Host   string
	Domain GetAppsDomainFields
}

type GetAppsDomainFields struct {
	Guid                   string
	Name                   string
	OwningOrganizationGuid string
	Shared                 bool
}

type GetOrgs_Model struct{ Guid, Name string }

type GetOrg_Model struct {
	Guid            string
	Name            string
	QuotaDefinition QuotaFields
	Spaces          []GetOrg_Space
	Domains         []GetOrg_Domains
	SpaceQuotas     []GetOrg_SpaceQuota
}

type GetOrg_Space struct{ Guid, Name string }

type GetOrg_Domains struct {
	Guid                   string
	Name                   string
	OwningOrganizationGuid string
	Shared                 bool
}

type GetOrg_SpaceQuota struct {
	Guid                    string
	Name                    string
	MemoryLimit             int64
	InstanceMemoryLimit     int64
	RoutesLimit             int
	ServicesLimit           int
	NonBasicServicesAllowed bool
}

type GetSpaces_Model struct{ Guid, Name string }

type GetSpace_Model struct {
	GetSpaces_Model
	Organization     GetSpace_Orgs
	Applications     []GetSpace_Apps
	ServiceInstances []GetSpace_ServiceInstance
	Domains          []GetSpace_Domains
	SecurityGroups   []GetSpace_SecurityGroup
	SpaceQuota       GetSpace_SpaceQuota
}

type GetSpace_Orgs struct{ Guid, Name string }
type GetSpace_Apps struct{ Name, Guid string }
type GetSpace_ServiceInstance struct{ Guid, Name string }

type GetSpace_Domains struct {
	Guid                   string
	Name                   string
	OwningOrganizationGuid string
	Shared                 bool
}

type GetSpace_SecurityGroup struct {
	Name  string
	Guid  string
	Rules []map[string]interface{}
}

type GetSpace_SpaceQuota struct {
	Guid                    string
	Name                    string
	MemoryLimit             int64
	InstanceMemoryLimit     int64
	RoutesLimit             int
	ServicesLimit           int
	NonBasicServicesAllowed bool
}

type GetOrgUsers_Model struct {
	Guid     string
	Username string
	IsAdmin  bool
	Roles    []string
}

type GetSpaceUsers_Model struct {
	Guid     string
	Username string
	IsAdmin  bool
	Roles    []string
}

type GetServices_Model struct {
	Guid             string
	Name             string
	ServicePlan      GetServices_ServicePlan
	Service          GetServices_ServiceFields
	LastOperation    GetServices_LastOperation
	ApplicationNames []string
	IsUserProvided   bool
}

type GetServices_LastOperation struct{ Type, State string }
type GetServices_ServicePlan struct{ Guid, Name string }
type GetServices_ServiceFields struct{ Name string }

type GetService_Model struct {
	Guid            string
	Name            string
	DashboardUrl    string
	IsUserProvided  bool
	ServiceOffering GetService_ServiceFields
	ServicePlan     GetService_ServicePlan
	LastOperation   GetService_LastOperation
}

type GetService_LastOperation struct{ Type, State, Description, CreatedAt, UpdatedAt string }
type GetService_ServicePlan struct{ Name, Guid string }
type GetService_ServiceFields struct{ Name, DocumentationUrl string }

// ---- the fake CLI state and the recorded calls ----

type config struct {
	api         string
	loggedIn    bool
	org         string
	orgGuid     string
	space       string
	spaceGuid   string
	minOK       bool
	token       string
	tokenError  string
	sslDisabled bool
	user        string
	apiVersion  string
}

type call struct {
	Method string      `json:"method"`
	Arg    interface{} `json:"arg"`
}

// CliRpcCmd has the method set of cli: plugin/rpc/cli_rpc_server.go.
type CliRpcCmd struct {
	cfg      config
	mu       sync.Mutex
	calls    []call
	metadata *PluginMetadata
}

func (c *CliRpcCmd) record(method string, arg interface{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, call{Method: method, Arg: arg})
}

func (c *CliRpcCmd) IsMinCliVersion(v string, r *bool) error {
	c.record("IsMinCliVersion", v)
	*r = c.cfg.minOK
	return nil
}

func (c *CliRpcCmd) SetPluginMetadata(m PluginMetadata, r *bool) error {
	c.record("SetPluginMetadata", nil)
	c.mu.Lock()
	c.metadata = &m
	c.mu.Unlock()
	*r = true
	return nil
}

func (c *CliRpcCmd) DisableTerminalOutput(d bool, r *bool) error {
	c.record("DisableTerminalOutput", d)
	*r = true
	return nil
}

func (c *CliRpcCmd) CallCoreCommand(args []string, r *bool) error {
	c.record("CallCoreCommand", args)
	*r = true
	return nil
}

func (c *CliRpcCmd) GetOutputAndReset(a bool, r *[]string) error {
	c.record("GetOutputAndReset", a)
	*r = []string{""}
	return nil
}

func (c *CliRpcCmd) GetCurrentOrg(a string, r *Organization) error {
	c.record("GetCurrentOrg", a)
	r.Name, r.Guid = c.cfg.org, c.cfg.orgGuid
	return nil
}

func (c *CliRpcCmd) GetCurrentSpace(a string, r *Space) error {
	c.record("GetCurrentSpace", a)
	r.Name, r.Guid = c.cfg.space, c.cfg.spaceGuid
	return nil
}

func (c *CliRpcCmd) Username(a string, r *string) error {
	c.record("Username", a)
	*r = c.cfg.user
	return nil
}

func (c *CliRpcCmd) UserGuid(a string, r *string) error {
	c.record("UserGuid", a)
	*r = "user-guid"
	return nil
}

func (c *CliRpcCmd) UserEmail(a string, r *string) error {
	c.record("UserEmail", a)
	*r = "user@example.com"
	return nil
}

func (c *CliRpcCmd) IsLoggedIn(a string, r *bool) error {
	c.record("IsLoggedIn", a)
	*r = c.cfg.loggedIn
	return nil
}

func (c *CliRpcCmd) IsSSLDisabled(a string, r *bool) error {
	c.record("IsSSLDisabled", a)
	*r = c.cfg.sslDisabled
	return nil
}

func (c *CliRpcCmd) HasOrganization(a string, r *bool) error {
	c.record("HasOrganization", a)
	*r = c.cfg.orgGuid != ""
	return nil
}

func (c *CliRpcCmd) HasSpace(a string, r *bool) error {
	c.record("HasSpace", a)
	*r = c.cfg.spaceGuid != ""
	return nil
}

func (c *CliRpcCmd) ApiEndpoint(a string, r *string) error {
	c.record("ApiEndpoint", a)
	*r = c.cfg.api
	return nil
}

func (c *CliRpcCmd) HasAPIEndpoint(a string, r *bool) error {
	c.record("HasAPIEndpoint", a)
	*r = c.cfg.api != ""
	return nil
}

func (c *CliRpcCmd) ApiVersion(a string, r *string) error {
	c.record("ApiVersion", a)
	*r = c.cfg.apiVersion
	return nil
}

func (c *CliRpcCmd) LoggregatorEndpoint(a string, r *string) error {
	c.record("LoggregatorEndpoint", a)
	*r = ""
	return nil
}

func (c *CliRpcCmd) DopplerEndpoint(a string, r *string) error {
	c.record("DopplerEndpoint", a)
	*r = "wss://doppler.example.com:443"
	return nil
}

func (c *CliRpcCmd) AccessToken(a string, r *string) error {
	c.record("AccessToken", a)
	if c.cfg.tokenError != "" {
		return errors.New(c.cfg.tokenError)
	}
	*r = c.cfg.token
	return nil
}

func (c *CliRpcCmd) GetApp(name string, r *GetAppModel) error {
	c.record("GetApp", name)
	if name == "missing" {
		return errors.New("App missing not found")
	}
	updated := time.Date(2020, 1, 14, 22, 50, 20, 0, time.UTC)
	since := time.Date(2020, 1, 14, 14, 51, 28, 0, time.FixedZone("", -8*3600))
	*r = GetAppModel{
		Guid:             "app-guid",
		Name:             name,
		DiskQuota:        1024,
		EnvironmentVars:  map[string]interface{}{"GREETING": "hi", "RATIO": 1.5, "ON": true},
		InstanceCount:    2,
		Memory:           32,
		State:            "started",
		PackageUpdatedAt: &updated,
		Stack:            &GetApp_Stack{Guid: "stack-guid", Name: "cflinuxfs4"},
		Instances: []GetApp_AppInstanceFields{
			{State: "running", Since: since, CpuUsage: 0.5, MemUsage: 15935488},
			{State: "starting"},
		},
		Routes: []GetApp_RouteSummary{
			{Guid: "route-guid", Host: "my-app", Domain: GetApp_DomainFields{Guid: "dom-guid", Name: "example.com"}, Port: 8080},
		},
	}
	return nil
}

func (c *CliRpcCmd) GetApps(a string, r *[]GetAppsModel) error {
	c.record("GetApps", a)
	return nil
}

func (c *CliRpcCmd) GetOrgs(a string, r *[]GetOrgs_Model) error {
	c.record("GetOrgs", a)
	return nil
}

func (c *CliRpcCmd) GetSpaces(a string, r *[]GetSpaces_Model) error {
	c.record("GetSpaces", a)
	return nil
}

func (c *CliRpcCmd) GetServices(a string, r *[]GetServices_Model) error {
	c.record("GetServices", a)
	return nil
}

func (c *CliRpcCmd) GetOrgUsers(a []string, r *[]GetOrgUsers_Model) error {
	c.record("GetOrgUsers", a)
	return nil
}

func (c *CliRpcCmd) GetSpaceUsers(a []string, r *[]GetSpaceUsers_Model) error {
	c.record("GetSpaceUsers", a)
	return nil
}

func (c *CliRpcCmd) GetOrg(a string, r *GetOrg_Model) error {
	c.record("GetOrg", a)
	return nil
}

func (c *CliRpcCmd) GetSpace(a string, r *GetSpace_Model) error {
	c.record("GetSpace", a)
	r.Guid, r.Name = "space-guid", a
	r.Organization = GetSpace_Orgs{Guid: "org-guid", Name: "my-org"}
	r.SecurityGroups = []GetSpace_SecurityGroup{{
		Name:  "public",
		Rules: []map[string]interface{}{{"protocol": "all", "destination": "0.0.0.0-9.255.255.255"}},
	}}
	return nil
}

func (c *CliRpcCmd) GetService(a string, r *GetService_Model) error {
	c.record("GetService", a)
	return nil
}

// ---- running the plugin ----

type report struct {
	ExitCode  int             `json:"exit_code"`
	TimedOut  bool            `json:"timed_out"`
	Stdout    string          `json:"stdout"`
	Stderr    string          `json:"stderr"`
	Calls     []call          `json:"calls"`
	Metadata  *PluginMetadata `json:"metadata"`
	ElapsedMs float64         `json:"elapsed_ms"`
	Runs      int             `json:"runs"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "fakecf: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	var cfg config
	flag.StringVar(&cfg.api, "api", "https://api.example.com", "API endpoint (empty: none set)")
	flag.BoolVar(&cfg.loggedIn, "logged-in", true, "IsLoggedIn answer")
	flag.StringVar(&cfg.org, "org", "my-org", "targeted org name")
	flag.StringVar(&cfg.orgGuid, "org-guid", "org-guid-1", "targeted org guid (empty: none)")
	flag.StringVar(&cfg.space, "space", "dev", "targeted space name")
	flag.StringVar(&cfg.spaceGuid, "space-guid", "space-guid-1", "targeted space guid (empty: none)")
	flag.BoolVar(&cfg.minOK, "min-ok", true, "IsMinCliVersion answer")
	flag.StringVar(&cfg.token, "token", "bearer eyJhbGciOiJub25lIn0.eyJleHAiOjR9.sig", "AccessToken answer")
	flag.StringVar(&cfg.tokenError, "token-error", "", "AccessToken error string")
	flag.BoolVar(&cfg.sslDisabled, "ssl-disabled", false, "IsSSLDisabled answer")
	flag.StringVar(&cfg.user, "user", "admin", "Username answer")
	flag.StringVar(&cfg.apiVersion, "api-version", "3.228.0", "ApiVersion answer")
	timeout := flag.Duration("timeout", 30*time.Second, "kill the plugin after this long")
	runs := flag.Int("runs", 1, "run the plugin this many times (fresh server each) and report the mean time")
	serve := flag.Bool("serve", false, "only serve: print the port, serve until stdin is closed")
	cfLike := flag.Bool("cf-like", false, "run the plugin as cf 7 does: shared stdio and process group, no signal handling")
	pidFile := flag.String("pid-file", "", "with -cf-like: write 'plugin-pid: N' to this file once the plugin runs")
	flag.Parse()
	if *serve {
		serveOnly(cfg)
		return
	}
	if flag.NArg() < 1 {
		fail("usage: fakecf [flags] <plugin-binary> <args after the port...>")
	}
	if *cfLike {
		os.Exit(runCfLike(cfg, *pidFile, flag.Arg(0), flag.Args()[1:]))
	}

	var rep report
	var total time.Duration
	for i := 0; i < *runs; i++ {
		r, elapsed := runOnce(cfg, *timeout, flag.Arg(0), flag.Args()[1:])
		total += elapsed
		rep = r
	}
	rep.Runs = *runs
	rep.ElapsedMs = float64(total.Microseconds()) / 1000 / float64(*runs)
	out, err := json.Marshal(rep)
	if err != nil {
		fail("encoding the report: %v", err)
	}
	fmt.Println(string(out))
}

// listen starts the RPC server for cmd on 127.0.0.1:0 and returns the listener.
func listen(cmd *CliRpcCmd) net.Listener {
	srv := rpc.NewServer()
	if err := srv.Register(cmd); err != nil {
		fail("register: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(conn)
		}
	}()
	return ln
}

// runCfLike runs the plugin the way cf 7 does (cmd.Run with cf's own stdio; the child stays
// in cf's process group; no signal.Notify anywhere, so SIGINT kills this process with the
// Go runtime's default action). Returns the exit code cf would: 1 if the plugin failed.
func runCfLike(cfg config, pidFile string, bin string, args []string) int {
	ln := listen(&CliRpcCmd{cfg: cfg})
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	plugin := exec.Command(bin, append([]string{port}, args...)...)
	plugin.Stdin, plugin.Stdout, plugin.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := plugin.Start(); err != nil {
		fail("starting %s: %v", bin, err)
	}
	if pidFile != "" {
		line := fmt.Sprintf("plugin-pid: %d\n", plugin.Process.Pid)
		// Written aside and renamed, so a reader never sees half a line.
		if err := os.WriteFile(pidFile+".tmp", []byte(line), 0o600); err != nil {
			fail("writing %s: %v", pidFile, err)
		}
		if err := os.Rename(pidFile+".tmp", pidFile); err != nil {
			fail("writing %s: %v", pidFile, err)
		}
	}
	if err := plugin.Wait(); err != nil {
		return 1
	}
	return 0
}

// serveOnly lets a test drive the server directly (it is the plugin-side client).
func serveOnly(cfg config) {
	ln := listen(&CliRpcCmd{cfg: cfg})
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	// Serve until the test closes our stdin (or dies).
	_, _ = io.Copy(io.Discard, os.Stdin)
}

func runOnce(cfg config, timeout time.Duration, bin string, args []string) (report, time.Duration) {
	cmd := &CliRpcCmd{cfg: cfg}
	ln := listen(cmd)
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)

	var stdout, stderr bytes.Buffer
	plugin := exec.Command(bin, append([]string{port}, args...)...)
	plugin.Stdout = &stdout
	plugin.Stderr = &stderr
	start := time.Now()
	if err := plugin.Start(); err != nil {
		fail("starting %s: %v", bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- plugin.Wait() }()
	rep := report{}
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		rep.TimedOut = true
		_ = plugin.Process.Kill()
		err = <-done
	}
	elapsed := time.Since(start)
	rep.ExitCode = 0
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			rep.ExitCode = exitErr.ExitCode()
		} else {
			fail("waiting for %s: %v", bin, err)
		}
	}
	rep.Stdout, rep.Stderr = stdout.String(), stderr.String()
	cmd.mu.Lock()
	rep.Calls, rep.Metadata = cmd.calls, cmd.metadata
	cmd.mu.Unlock()
	if rep.Calls == nil {
		rep.Calls = []call{}
	}
	return rep, elapsed
}
