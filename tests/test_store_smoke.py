from namesrv_redis.model import QueueConfig
from namesrv_redis.store import BrokerRegistration, RegisterStatus, RouteStore


async def test_smoke(redis, namespace):
    st = RouteStore(redis, namespace)
    await st.load_scripts()
    reg = BrokerRegistration(
        "C",
        "127.0.0.1:10911",
        "broker-a",
        0,
        "127.0.0.1:10912",
        '{"counter":1,"timestamp":1}',
        topics=[QueueConfig("T1", 8, 8, 6), QueueConfig("T2", 4, 4, 6)],
    )
    r = await st.register_broker(reg)
    assert r.status is RegisterStatus.OK, r
    route = await st.get_route("T1")
    print(route)
    assert route is not None and route.broker_datas[0].broker_addrs == {0: "127.0.0.1:10911"}
    ci = await st.get_cluster_info()
    print(ci)
    r = await st.unregister_broker("C", "127.0.0.1:10911", "broker-a")
    assert r.removed
    assert await st.get_route("T1") is None
