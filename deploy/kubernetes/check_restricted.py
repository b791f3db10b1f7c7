#!/usr/bin/env python3
"""Checks pod specs against the Kubernetes "restricted" Pod Security Standard.

    python3 check_restricted.py [--read-only-root] FILE...   # exit 1 on any violation
    python3 check_restricted.py --self-test                  # the checker's own tests

Reads every YAML document in FILE... (PyYAML), finds the pod template of
Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController,
Job and CronJob objects, and applies the rules of the "baseline" and
"restricted" levels as the Pod Security admission controller does
(https://kubernetes.io/docs/concepts/security/pod-security-standards/,
policy version "latest", Linux pods):

baseline
  - no hostNetwork / hostPID / hostIPC, no hostPort
  - no privileged container, no windowsOptions.hostProcess
  - no hostPath volume
  - capabilities.add only from the baseline list
  - AppArmor only RuntimeDefault / Localhost (field or annotation)
  - SELinux: type only container_t / container_init_t / container_kvm_t /
    container_engine_t, no user or role
  - procMount only Default; sysctls only the safe set
  - seccomp never Unconfined
restricted
  - volumes only configMap, csi, downwardAPI, emptyDir, ephemeral,
    persistentVolumeClaim, projected, secret
  - allowPrivilegeEscalation: false on every container
  - runAsNonRoot: true (pod, or every container), never false on a container
  - runAsUser never 0 (pod or container)
  - seccompProfile RuntimeDefault or Localhost (pod, or every container)
  - capabilities.drop contains ALL; capabilities.add at most NET_BIND_SERVICE

--read-only-root also requires readOnlyRootFilesystem: true on every
container (this project's own rule, not part of the standard).

Containers are containers, initContainers and ephemeralContainers. Files
whose documents hold no pod spec pass. Prints one line per violation, naming
file, object, container and field.
"""

import sys

import yaml

POD_TEMPLATE_PATHS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
TEMPLATE_METADATA_PATHS = {
    kind: path[:-1] + ("metadata",) if kind != "Pod" else ("metadata",)
    for kind, path in POD_TEMPLATE_PATHS.items()
}

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}
RESTRICTED_ADD_CAPABILITIES = {"NET_BIND_SERVICE"}
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SECCOMP_OK = {"RuntimeDefault", "Localhost"}
APPARMOR_OK = {"RuntimeDefault", "Localhost"}


def dig(obj, path):
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def containers_of(spec):
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            yield field, c


def check_pod(spec, metadata, read_only_root=False):
    """Returns the violations of one pod spec, as (where, message) pairs."""
    out = []

    def bad(where, msg):
        out.append((where, msg))

    pod_sc = spec.get("securityContext") or {}
    annotations = (metadata or {}).get("annotations") or {}

    # --- baseline: host namespaces, host paths, host ports ----------------
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            bad("spec", f"{field}: true is not allowed")
    for v in spec.get("volumes") or []:
        name = v.get("name", "?")
        types = [k for k in v if k != "name"]
        if "hostPath" in types:
            bad(f"volume {name}", "hostPath volumes are not allowed")
        for t in types:
            if t not in RESTRICTED_VOLUME_TYPES and t != "hostPath":
                bad(f"volume {name}", f"volume type {t} is not allowed (restricted: "
                    + ", ".join(sorted(RESTRICTED_VOLUME_TYPES)) + ")")

    # --- pod-level security context ---------------------------------------
    if pod_sc.get("runAsUser") == 0:
        bad("spec.securityContext", "runAsUser: 0 (root) is not allowed")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_OK:
        bad("spec.securityContext", f"seccompProfile.type {pod_seccomp} is not allowed "
            "(RuntimeDefault or Localhost)")
    pod_apparmor = (pod_sc.get("appArmorProfile") or {}).get("type")
    if pod_apparmor is not None and pod_apparmor not in APPARMOR_OK:
        bad("spec.securityContext", f"appArmorProfile.type {pod_apparmor} is not allowed")
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/"):
            if value != "runtime/default" and not str(value).startswith("localhost/"):
                bad("metadata.annotations", f"{key}: {value} is not allowed")
    check_selinux("spec.securityContext", pod_sc.get("seLinuxOptions"), bad)
    for s in pod_sc.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            bad("spec.securityContext", f"sysctl {s.get('name')} is not in the safe set")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        bad("spec.securityContext", "windowsOptions.hostProcess is not allowed")

    # --- per container --------------------------------------------------------
    for field, c in containers_of(spec):
        where = f"{field} {c.get('name', '?')}"
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            bad(where, "privileged: true is not allowed")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            bad(where, "windowsOptions.hostProcess is not allowed")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                bad(where, f"hostPort {p['hostPort']} is not allowed")
        if sc.get("procMount", "Default") != "Default":
            bad(where, f"procMount {sc['procMount']} is not allowed")
        check_selinux(where, sc.get("seLinuxOptions"), bad)
        apparmor = (sc.get("appArmorProfile") or {}).get("type")
        if apparmor is not None and apparmor not in APPARMOR_OK:
            bad(where, f"appArmorProfile.type {apparmor} is not allowed")

        if sc.get("allowPrivilegeEscalation") is not False:
            bad(where, "allowPrivilegeEscalation must be false")

        run_as_non_root = sc.get("runAsNonRoot")
        if run_as_non_root is False:
            bad(where, "runAsNonRoot: false is not allowed")
        elif run_as_non_root is None and pod_sc.get("runAsNonRoot") is not True:
            bad(where, "runAsNonRoot must be true (on the container or the pod)")
        if sc.get("runAsUser") == 0:
            bad(where, "runAsUser: 0 (root) is not allowed")

        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in SECCOMP_OK:
            bad(where, f"seccompProfile.type {seccomp} is not allowed (RuntimeDefault or Localhost)")
        if seccomp is None and pod_seccomp not in SECCOMP_OK:
            bad(where, "seccompProfile.type must be RuntimeDefault or Localhost "
                "(on the container or the pod)")

        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad(where, "capabilities.drop must contain ALL")
        for cap in caps.get("add") or []:
            if cap not in RESTRICTED_ADD_CAPABILITIES:
                level = "baseline and restricted" if cap not in BASELINE_CAPABILITIES else "restricted"
                bad(where, f"capabilities.add {cap} is not allowed ({level}: only NET_BIND_SERVICE)")

        if read_only_root and sc.get("readOnlyRootFilesystem") is not True:
            bad(where, "readOnlyRootFilesystem must be true (--read-only-root)")
    return out


def check_selinux(where, opts, bad):
    if not opts:
        return
    if opts.get("type", "") not in SELINUX_TYPES:
        bad(where, f"seLinuxOptions.type {opts['type']} is not allowed")
    for key in ("user", "role"):
        if opts.get(key):
            bad(where, f"seLinuxOptions.{key} must not be set")


def check_documents(docs, read_only_root=False):
    """Violations of every pod spec in `docs`, as (object, where, message)."""
    out = []
    pods = 0
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        kind = doc.get("kind")
        if kind not in POD_TEMPLATE_PATHS:
            continue
        spec = dig(doc, POD_TEMPLATE_PATHS[kind])
        obj = f"{kind}/{dig(doc, ('metadata', 'name'))}"
        if not isinstance(spec, dict):
            out.append((obj, "spec", "no pod spec found"))
            continue
        pods += 1
        metadata = dig(doc, TEMPLATE_METADATA_PATHS[kind])
        for where, msg in check_pod(spec, metadata, read_only_root):
            out.append((obj, where, msg))
    return out, pods


GOOD_POD = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: good}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: c
          image: x
          securityContext:
            runAsUser: 65532
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
      volumes:
        - {name: s, secret: {secretName: s}}
        - {name: t, emptyDir: {}}
"""

# Each bad example: (what it breaks, pod spec as YAML, text the message must contain).
BAD_PODS = [
    ("root user", "securityContext: {runAsUser: 0}", "runAsUser: 0"),
    ("no runAsNonRoot", "securityContext: {runAsNonRoot: null}", "runAsNonRoot must be true"),
    ("runAsNonRoot false", "containers[0].securityContext: {runAsNonRoot: false}",
     "runAsNonRoot: false"),
    ("unconfined seccomp", "securityContext: {seccompProfile: {type: Unconfined}}",
     "seccompProfile.type Unconfined"),
    ("no seccomp", "securityContext: {seccompProfile: null}", "seccompProfile.type must be"),
    ("drop not ALL", "containers[0].securityContext: {capabilities: {drop: [NET_RAW]}}",
     "capabilities.drop must contain ALL"),
    ("adds NET_ADMIN", "containers[0].securityContext: {capabilities: {add: [NET_ADMIN]}}",
     "capabilities.add NET_ADMIN"),
    ("adds CHOWN", "containers[0].securityContext: {capabilities: {add: [CHOWN]}}",
     "capabilities.add CHOWN"),
    ("privilege escalation", "containers[0].securityContext: {allowPrivilegeEscalation: true}",
     "allowPrivilegeEscalation must be false"),
    ("escalation unset", "containers[0].securityContext: {allowPrivilegeEscalation: null}",
     "allowPrivilegeEscalation must be false"),
    ("privileged", "containers[0].securityContext: {privileged: true}", "privileged"),
    ("hostNetwork", "hostNetwork: true", "hostNetwork"),
    ("hostPID", "hostPID: true", "hostPID"),
    ("hostIPC", "hostIPC: true", "hostIPC"),
    ("hostPath", "volumes: [{name: h, hostPath: {path: /}}]", "hostPath volumes"),
    ("nfs volume", "volumes: [{name: n, nfs: {server: x, path: /}}]", "volume type nfs"),
    ("hostPort", "containers[0].ports: [{containerPort: 80, hostPort: 80}]", "hostPort"),
    ("procMount", "containers[0].securityContext: {procMount: Unmasked}", "procMount"),
    ("sysctl", "securityContext: {sysctls: [{name: kernel.msgmax, value: '1'}]}", "sysctl"),
    ("selinux type", "securityContext: {seLinuxOptions: {type: spc_t}}", "seLinuxOptions.type"),
    ("init container", "initContainers: [{name: i, image: x}]", "initContainers i"),
    ("writable root", "containers[0].securityContext: {readOnlyRootFilesystem: false}",
     "readOnlyRootFilesystem"),
]


def self_test():
    """The good example passes; each bad one fails with its message."""
    failures = 0
    good = yaml.safe_load(GOOD_POD)
    problems, pods = check_documents([good], read_only_root=True)
    if problems or pods != 1:
        print(f"self-test: the good example failed: {problems}")
        failures += 1
    for what, change, expect in BAD_PODS:
        doc = yaml.safe_load(GOOD_POD)
        spec = doc["spec"]["template"]["spec"]
        key, value = change.split(": ", 1)
        value = yaml.safe_load(value)
        if key == "containers[0].securityContext":
            spec["containers"][0]["securityContext"].update(value)
        elif key == "containers[0].ports":
            spec["containers"][0]["ports"] = value
        elif key == "securityContext":
            spec["securityContext"].update(value)
        else:
            spec[key] = value
        # drop the keys set to null, as if they were never written
        for sc in (spec["securityContext"], spec["containers"][0]["securityContext"]):
            for k in [k for k, v in sc.items() if v is None]:
                del sc[k]
        problems, _ = check_documents([doc], read_only_root=True)
        messages = [f"{w}: {m}" for _, w, m in problems]
        if not any(expect in m for m in messages):
            print(f"self-test: '{what}' was not caught (want '{expect}', got {messages})")
            failures += 1
    if failures:
        print(f"self-test: {failures} failed")
        return 1
    print(f"check_restricted self-test: {len(BAD_PODS) + 1} passed, 0 failed")
    return 0


def main(argv):
    if argv == ["--self-test"]:
        return self_test()
    read_only_root = "--read-only-root" in argv
    files = [a for a in argv if a != "--read-only-root"]
    if not files:
        print(__doc__.strip().splitlines()[0])
        print("usage: check_restricted.py [--read-only-root] FILE... | --self-test")
        return 2
    total_pods = 0
    violations = 0
    for path in files:
        with open(path, encoding="utf-8") as f:
            docs = list(yaml.safe_load_all(f))
        problems, pods = check_documents(docs, read_only_root)
        total_pods += pods
        for obj, where, msg in problems:
            print(f"{path}: {obj}: {where}: {msg}")
            violations += 1
    if violations:
        print(f"{violations} violation(s) of the restricted Pod Security Standard")
        return 1
    print(f"restricted Pod Security: {total_pods} pod spec(s) in {len(files)} file(s) pass")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
