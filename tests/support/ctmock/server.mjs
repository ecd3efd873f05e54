// The third-party commercetools mock, served on 127.0.0.1 only (its own runServer binds
// every interface). Usage: node server.mjs PORT PROJECT_KEY; prints "listening PORT".
import { CommercetoolsMock } from "@labdigital/commercetools-mock";

const port = Number(process.argv[2] ?? 0);
const project = process.argv[3] ?? "acme-test";
const mock = new CommercetoolsMock({
  enableAuthentication: true,
  validateCredentials: false,
  defaultProjectKey: project,
  silent: true,
});
await mock.app.listen({ port, host: "127.0.0.1" });
console.log(`listening ${mock.app.server.address().port}`);
