'use strict';
// Fetch topic routes from a name server with the ali-ons RocketMQ client (pure JavaScript).
// usage: node route.js <host:port | http://address-server/rocketmq/nsaddr> <topic> [<topic> …]
// Prints one JSON line per topic: {"topic", "ok": true, "route"} or {"topic", "ok": false,
// "code", "message"}; then {"done": true, "nameSrvList": [...]}. Exits 0 unless the client
// itself could not start.
const http = require('http');
const MQClientAPI = require('ali-ons/lib/mq_client_api');

// The minimal urllib-style client ali-ons needs for an address server.
const httpclient = {
  request(url, options) {
    return new Promise((resolve, reject) => {
      const req = http.get(url, { timeout: (options && options.timeout) || 5000 }, res => {
        const chunks = [];
        res.on('data', c => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, data: Buffer.concat(chunks) }));
      });
      req.on('error', reject);
      req.on('timeout', () => req.destroy(new Error('address server timeout')));
    });
  },
};

async function main() {
  const [target, ...topics] = process.argv.slice(2);
  const options = { httpclient, logger: { info() {}, warn() {}, error() {}, debug() {} } };
  if (target.startsWith('http://')) options.onsAddr = target; else options.nameSrv = [ target ];
  const api = new MQClientAPI(options);
  await api.ready();
  for (const topic of topics) {
    try {
      const route = await api.getTopicRouteInfoFromNameServer(topic, 3000);
      console.log(JSON.stringify({ topic, ok: true, route }));
    } catch (err) {
      console.log(JSON.stringify({ topic, ok: false, code: err.code, name: err.name, message: err.message }));
    }
  }
  console.log(JSON.stringify({ done: true, nameSrvList: api._namesrvAddrList }));
}

main().then(() => process.exit(0), err => {
  console.error(err && err.stack || err);
  process.exit(2);
});
