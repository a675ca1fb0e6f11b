// One-shot, idempotent set-up of the stack's MongoDB replica set (run by the
// `mongo-init` service in stack.yml: `mongosh --nodb --quiet --file mongo-init.js`).
//
// 1. `rs.initiate` with the three members, once (a set that already exists is left alone).
// 2. Waits for a primary.
// 3. Creates, or updates the password of, the service's user: `readWrite` on
//    its database only (not root, no other database). The service needs no
//    more: indexes are created with `createIndex`; a changed audit TTL falls
//    back from `collMod` to drop-and-recreate.
// Passwords are read from Docker secret files, never from the command line.
const fs = require('fs');

const secret = (name) =>
  fs.readFileSync('/run/secrets/' + name, 'utf8').replace(/[\r\n]+$/, '');
const env = (name, fallback) => process.env[name] || fallback;

const SET = env('MONGO_REPLICA_SET', 'rs0');
const MEMBERS = env('MONGO_MEMBERS', 'mongo1:27017,mongo2:27017,mongo3:27017').split(',');
const APP_DB = env('APP_DB', 'vault');
const APP_USER = env('APP_USER', 'vault-app');
const rootPassword = secret('vault_mongo_root_password');

// The first member may still be starting: retry the connection for a while.
function connectTo(uri) {
  for (let attempt = 1; ; attempt++) {
    try {
      const conn = new Mongo(uri);
      const admin = conn.getDB('admin');
      admin.auth('root', rootPassword);
      return admin;
    } catch (e) {
      if (attempt >= 60) throw e;
      print(`waiting for ${uri}: ${e.message}`);
      sleep(2000);
    }
  }
}

const first = connectTo(`mongodb://${MEMBERS[0]}/?directConnection=true`);
let initiated = true;
try {
  first.runCommand({ replSetGetStatus: 1 });
} catch (e) {
  if (e.code !== 94 /* NotYetInitialized */) throw e;
  initiated = false;
}
if (!initiated) {
  print(`initiating replica set ${SET}`);
  first.runCommand({
    replSetInitiate: {
      _id: SET,
      members: MEMBERS.map((host, i) => ({ _id: i, host, priority: i === 0 ? 2 : 1 })),
    },
  });
} else {
  print(`replica set ${SET} already initiated`);
}

const admin = connectTo(`mongodb://${MEMBERS.join(',')}/?replicaSet=${SET}`);
for (let attempt = 1; !admin.runCommand({ hello: 1 }).primary; attempt++) {
  if (attempt >= 60) throw new Error('no primary elected');
  sleep(2000);
}

const appPassword = secret('vault_mongo_app_password');
const roles = [{ role: 'readWrite', db: APP_DB }];
const writeConcern = { w: 'majority', j: true };
if (admin.getUser(APP_USER)) {
  admin.updateUser(APP_USER, { pwd: appPassword, roles }, writeConcern);
  print(`updated user ${APP_USER}`);
} else {
  admin.createUser({ user: APP_USER, pwd: appPassword, roles }, writeConcern);
  print(`created user ${APP_USER}`);
}
