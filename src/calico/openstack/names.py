"""Names and label keys OpenStack resources get in Calico (networking-calico's conventions). Pure."""

from __future__ import annotations

ORCHESTRATOR = "openstack"
NAMESPACE = "openstack"  # every OpenStack endpoint, policy and network set lives here
IFACE_PREFIX = "tap"  # Nova's libvirt driver names a port's tap device "tap" + the port id's first 11 chars

SG_LABEL_PREFIX = "sg.projectcalico.org/openstack-"
PROJECT_ID_LABEL = "projectcalico.org/openstack-project-id"
PROJECT_NAME_LABEL = "projectcalico.org/openstack-project-name"
NETWORK_ID_LABEL = "projectcalico.org/openstack-network-id"
NETWORK_NAME_LABEL = "projectcalico.org/openstack-network-name"
ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
NAMESPACE_LABEL = "projectcalico.org/namespace"

SG_POLICY_PREFIX = "ossg.default."  # one NetworkPolicy per security group: ossg.default.<sg id>
AAP_SET_PREFIX = "osaap."  # one NetworkSet per port with allowed address pairs: osaap.<port id>
NO_PORT_SECURITY_PROFILE = "openstack-port-security-disabled"


def tap_name(port_id: str) -> str:
    return IFACE_PREFIX + port_id[:11]


def sg_label(sg_id: str) -> str:
    return SG_LABEL_PREFIX + sg_id


def sg_selector(sg_id: str) -> str:
    return f"has({sg_label(sg_id)})"


def sg_policy_name(sg_id: str) -> str:
    return SG_POLICY_PREFIX + sg_id


def sg_id_of_policy(name: str) -> str | None:
    return name[len(SG_POLICY_PREFIX):] if name.startswith(SG_POLICY_PREFIX) else None


def aap_set_name(port_id: str) -> str:
    return AAP_SET_PREFIX + port_id


def endpoint_name(host: str, instance_id: str, port_id: str) -> str:
    """Calico's WorkloadEndpoint name `<node>-openstack-<workload>-<endpoint>`, dashes in each part doubled."""
    return "-".join(p.replace("-", "--") for p in (host, ORCHESTRATOR, instance_id, port_id))


def label_value(text: str | None) -> str:
    """A Neutron name made into a valid label value (at most 63 characters of [-A-Za-z0-9_.], alnum ends)."""
    out = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in (text or ""))[:63]
    return out.strip("-_.")


def port_of_endpoint(name: str) -> str | None:
    """The port id of an endpoint named by `endpoint_name` (None for a name not of that form)."""
    parts = name.replace("--", "\0").split("-")
    if len(parts) != 4 or parts[1] != ORCHESTRATOR:
        return None
    return parts[3].replace("\0", "-")
