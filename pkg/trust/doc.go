// Package trust holds the trust anchors the ClusterSet operator
// configures: for every member cluster, the CA certificates that issue
// that member's identities (its gateways', Gateway API Envoys' and
// clients'). With anchors, trust is never widened by what a member
// publishes: a member's issuer vouches only for that member's
// identities, over xDS and on tunnels, and the tunnels' trust bundle is
// the anchors, not the members' ca.crt.
package trust
