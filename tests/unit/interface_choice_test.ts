/**
 * Discovery's interface when none is configured: the kernel's route when one
 * covers the multicast groups, else the one usable interface (a vcluster
 * guest has eth0 and no default route), else an error naming the flag.
 */
import { chooseInterface, interfaceAddress, parseRoutes } from "../../core/discovery/local.ts";
import { PpmError } from "../../core/errors.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../support/assert.ts";

/** The PpmError `fn` throws. */
function errorOf(fn: () => unknown): PpmError {
  try {
    fn();
  } catch (e) {
    assert(e instanceof PpmError, String(e));
    return e;
  }
  throw new Error("no error thrown");
}

const HEADER =
  "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

function iface(name: string, address: string): Deno.NetworkInterfaceInfo {
  return {
    name,
    family: "IPv4",
    address,
    netmask: "255.255.255.0",
    scopeid: null,
    cidr: "",
    mac: "",
  };
}

const LO = iface("lo", "127.0.0.1");
const LINK = iface("eth9", "169.254.3.4");

Deno.test("routes: /proc/net/route parsed; bad lines skipped", () => {
  const text = HEADER +
    "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
    "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
    "br0\t000000E0\t00000000\t0001\t0\t0\t0\t000000F0\t0\t0\t0\n" +
    "junk\tzz\n" +
    "evil\t0000000G\t0\t0\t0\t0\t0\t00000000\n";
  assertEquals(parseRoutes(text), [
    { iface: "eth0", destination: 0, mask: 0 },
    { iface: "eth0", destination: 0xc0000200, mask: 0xffffff00 },
    { iface: "br0", destination: 0xe0000000, mask: 0xf0000000 },
  ]);
  assertEquals(parseRoutes(""), []);
});

Deno.test("interface: a default or multicast route lets the kernel choose", () => {
  const two = [LO, iface("eth0", "10.0.0.1"), iface("eth1", "10.1.0.1")];
  assertEquals(chooseInterface(two, [{ iface: "eth0", destination: 0, mask: 0 }]), null);
  const mc = { iface: "eth1", destination: 0xe0000000, mask: 0xf0000000 };
  assertEquals(chooseInterface(two, [mc]), null);
  // A route on loopback or for another network covers nothing.
  const lo = { iface: "lo", destination: 0, mask: 0 };
  const net = { iface: "eth0", destination: 0x0a000000, mask: 0xffffff00 };
  assertThrows(() => chooseInterface(two, [lo, net]), PpmError);
});

Deno.test("interface: the one usable interface of a guest without a default route", () => {
  const guest = [LO, LINK, iface("eth0", "10.77.0.1")];
  const net = [{ iface: "eth0", destination: 0x0a4d0000, mask: 0xffffff00 }];
  assertEquals(chooseInterface(guest, net), "10.77.0.1");
  assertEquals(interfaceAddress(null, guest, net), "10.77.0.1");
  // Two addresses on one interface: still that interface (its first address).
  assertEquals(chooseInterface([...guest, iface("eth0", "10.78.0.1")], net), "10.77.0.1");
  // A configured interface is used as given, whatever the routes.
  assertEquals(interfaceAddress("eth0", guest, []), "10.77.0.1");
});

Deno.test("interface: ambiguous or none, an error that names the flag", () => {
  const two = [LO, iface("eth0", "10.0.0.1"), iface("ib0", "10.1.0.1")];
  const e = errorOf(() => chooseInterface(two, []));
  assertMatch(e.message, /cannot choose an interface for discovery/);
  assertMatch(e.message, /eth0 \(10\.0\.0\.1\), ib0 \(10\.1\.0\.1\)/);
  assertMatch(e.fix, /--interface NAME/);
  const none = errorOf(() => chooseInterface([LO, LINK], []));
  assertMatch(none.message, /no IPv4 address besides loopback/);
  assertMatch(none.fix, /--interface lo/);
});
