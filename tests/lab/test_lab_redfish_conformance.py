"""The lab Redfish BMCs behave as real ones do where a client notices (issue 20), checked with curl."""

from __future__ import annotations

import re

import pytest

from console.drivers.bmc import PowerState
from console.drivers.redfish import RedfishDriver
from console.errors import DriverError
from console.lab.redfish_bmc import FLAVORS, RedfishLab
from console.lab.redfish_metadata import COLLECTIONS, SCHEMAS
from console.secrets import Secret

from ..engine.test_driver_redfish import bmc_for
from .test_lab_redfish import PASSWORD, USER, crawl, curl_test, error_id, eventually, serve


@pytest.fixture
def lab(redfish_lab):
    return redfish_lab


@curl_test
@pytest.mark.parametrize("flavor", sorted(FLAVORS))
async def test_odata_documents_are_public_and_name_every_served_schema(lab: RedfishLab, flavor: str) -> None:
    (node,) = await serve(lab, "127.78.40.1", flavor=flavor)
    r = await node.get("/redfish/v1/odata", user=None)
    assert r.status == 200 and {"name": "Systems", "kind": "Singleton", "url": "/redfish/v1/Systems"} in r.json()[
        "value"]
    meta = await node.get("/redfish/v1/$metadata", user=None)
    assert meta.status == 200 and meta.headers["content-type"].startswith("application/xml")
    included = set(re.findall(r'Include Namespace="([^"]+)"', meta.body.decode()))
    # Anything else is 401 before routing, then 404.
    assert (await node.get("/redfish/v1/NoSuchThing", user=None)).status == 401
    assert (await node.get("/redfish/v1/NoSuchThing")).status == 404
    docs = await crawl(node)
    for path, doc in docs.items():
        kind = doc["@odata.type"].lstrip("#").rsplit(".", 1)[0]
        assert kind in included, f"{path}: {kind} not in $metadata"
        assert kind in SCHEMAS or kind in COLLECTIONS, kind
    for want in ("Processors", "Memory", "Storage", "SimpleStorage", "Bios", "SecureBoot"):
        assert any(p.endswith(f"/{want}") for p in docs), want
    assert {"/redfish/v1/UpdateService", "/redfish/v1/TaskService", "/redfish/v1/EventService",
            "/redfish/v1/AccountService/Roles/ReadOnly"} <= docs.keys()
    assert any("/Managers/" in p and p.endswith("/EthernetInterfaces/eth0") for p in docs)


@curl_test
async def test_query_options_501_and_foreign_odata_version_412(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.40.2")
    for q in ("$select=Name", "$expand=*", "$bogus=1"):
        r = await node.get(f"/redfish/v1/Systems?{q}")
        assert r.status == 501 and error_id(r) == "QueryNotSupported", q
    r = await node.get("/redfish/v1/Systems", headers=("OData-Version: 4.1",))
    assert r.status == 412 and error_id(r) == "HeaderInvalid"
    assert (await node.get("/redfish/v1/Systems", headers=("OData-Version: 4.0",))).status == 200


@curl_test
async def test_ilo_uris_are_case_insensitive_and_others_are_not(lab: RedfishLab) -> None:
    (ilo,) = await serve(lab, "127.78.40.3", flavor="ilo")
    r = await ilo.get("/REDFISH/v1/systems/1/logservices/iml")
    assert r.status == 200 and r.json()["@odata.id"] == "/redfish/v1/Systems/1/LogServices/IML"
    other = RedfishLab()
    try:
        (dmtf,) = await serve(other, "127.78.40.4", flavor="dmtf", scheme="http")
        assert (await dmtf.get("/redfish/v1/systems/437XR1138R2")).status == 404
    finally:
        await other.stop()


@curl_test
@pytest.mark.parametrize("flavor", ["dmtf", "openbmc"])
async def test_asset_tag_and_led_patch_with_etag_rules(lab: RedfishLab, flavor: str) -> None:
    (node,) = await serve(lab, "127.78.40.5", flavor=flavor)
    sysuri = "/redfish/v1/Systems/" + ("system" if flavor == "openbmc" else "437XR1138R2")
    r = await node.get(sysuri)
    etag = r.headers["etag"]
    stale = await node.get(sysuri, method="PATCH", body={"AssetTag": "x"}, headers=('If-Match: W/"00000000"',))
    assert stale.status == 412 and error_id(stale) == "PreconditionFailed"
    assert (await node.get_json(sysuri))["AssetTag"] == ""
    ok = await node.get(sysuri, method="PATCH", body={"AssetTag": "rack7-u12", "IndicatorLED": "Blinking"},
                        headers=(f"If-Match: {etag}",))
    assert ok.status == 204, ok.body
    doc = await node.get_json(sysuri)
    assert (doc["AssetTag"], doc["IndicatorLED"]) == ("rack7-u12", "Blinking")
    assert (await node.get(sysuri, headers=(f"If-None-Match: {(await node.get(sysuri)).headers['etag']}",)
                           )).status == 304
    bad = await node.get(sysuri, method="PATCH", body={"IndicatorLED": "Disco"})
    assert bad.status == 400 and error_id(bad) == "PropertyValueNotInList"
    # Wide boot targets as the captures list them, read back as written.
    targets = doc["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"]
    assert "Usb" in targets
    assert (await node.get(sysuri, method="PATCH", body={"Boot": {"BootSourceOverrideTarget": "Usb"}})).status == 204
    assert (await node.get_json(sysuri))["Boot"]["BootSourceOverrideTarget"] == "Usb"
    reset = doc["Actions"]["#ComputerSystem.Reset"]
    if flavor == "openbmc":
        info = await node.get_json(reset["@Redfish.ActionInfo"])
        assert "ForceOff" in info["Parameters"][0]["AllowableValues"]
        assert "ResetType@Redfish.AllowableValues" not in reset
    else:
        assert "@Redfish.ActionInfo" not in reset


@curl_test
async def test_fan_readings_are_integers(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.40.6", fault="fan")
    fans = (await node.get_json("/redfish/v1/Chassis/1U/Thermal"))["Fans"]
    assert fans and all(isinstance(v, int) for f in fans for k, v in f.items()
                        if k == "Reading" or k.endswith(("ThresholdCritical", "ThresholdNonCritical")))


@curl_test
async def test_manager_reset_takes_the_bmc_away_then_back_without_sessions(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.40.7")
    login = {"UserName": USER, "Password": PASSWORD}
    r = await node.get("/redfish/v1/SessionService/Sessions", user=None, method="POST", body=login)
    token = (f"X-Auth-Token: {r.headers['x-auth-token']}",)
    r = await node.get("/redfish/v1/Managers/BMC/Actions/Manager.Reset", method="POST",
                       body={"ResetType": "GracefulRestart"})
    assert r.status == 204
    assert (await node.get("/redfish/v1", max_time=2)).exit != 0, "a rebooting BMC does not answer"

    async def back() -> bool:
        return (await node.get("/redfish/v1", max_time=2)).status == 200
    await eventually(back, timeout=10)
    assert (await node.get("/redfish/v1/Systems", user=None, headers=token)).status == 401
    assert (await node.get("/redfish/v1/Systems")).status == 200


async def test_the_console_driver_reconnects_after_a_manager_reset(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.40.8")
    driver = RedfishDriver(bmc_for(lab, node.address, node.port, "https-verified"), Secret(PASSWORD))
    try:
        assert await driver.power_state() == PowerState.ON
        r = await node.get("/redfish/v1/Managers/BMC/Actions/Manager.Reset", method="POST",
                           body={"ResetType": "ForceRestart"})
        assert r.status == 204
        with pytest.raises(DriverError):  # gone: the kept-alive connection was dropped, new ones refused
            await driver.power_state()

        async def answers() -> bool:
            try:
                return await driver.power_state() == PowerState.ON
            except DriverError:
                return False
        await eventually(answers, timeout=10)  # reconnected, and logged in again
        assert lab.session_count() == 1
    finally:
        await driver.close()
