'use strict';
// An X.509 enrollment group whose signing certificate is base64 of the PEM file, then its
// attestation mechanism (the SDK sends /enrollmentgroups/{id}/attestationmechanism, lower-case g).

const fs = require('node:fs');
const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');
const { assert, env, run } = require('./harness');

run(async () => {
  const service = ProvisioningServiceClient.fromConnectionString(env('DPS_CONNECTION_STRING'));
  const certificate = fs.readFileSync(env('SIGNING_CERTIFICATE_FILE')).toString('base64');
  const group = {
    enrollmentGroupId: 'node-b64-group',
    attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate } } } },
    provisioningStatus: 'enabled',
  };
  const created = (await service.createOrUpdateEnrollmentGroup(group)).responseBody;
  assert.equal(created.enrollmentGroupId, 'node-b64-group');
  assert.ok(created.attestation.x509.signingCertificates.primary.info.sha256Thumbprint);
  const mechanism = (await service.getEnrollmentGroupAttestationMechanism('node-b64-group')).responseBody;
  assert.equal(mechanism.type, 'x509');
  await service.deleteEnrollmentGroup('node-b64-group');
});
