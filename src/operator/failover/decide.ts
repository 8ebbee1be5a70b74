// Whether a MailContinuity is in failover: a pure function of
// spec.failover.manual, the primary's health (after hysteresis) and whether
// failover was active before.
//
//   manual Active    -> active (trigger Manual), whatever the probes say;
//   manual Inactive  -> never active: the admin has forbidden automatic failover;
//   manual Auto      -> active while the primary is Unhealthy (trigger Automatic),
//                       inactive once it is Healthy again (successThreshold good
//                       probes). While the health is Unknown (operator restarted,
//                       new target) the previous verdict stands: an operator that
//                       restarts during an outage must not end the failover.
import type { Condition, MailContinuitySpec } from '../../api/v1alpha1/mailcontinuity.js';
import type { HealthState } from '../health/hysteresis.js';

export const FAILOVER_ACTIVE = 'FailoverActive';

export type Trigger = 'Automatic' | 'Manual';

export interface FailoverDecision {
  active: boolean;
  trigger?: Trigger;
  condition: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;
}

export function decideFailover(
  spec: Pick<MailContinuitySpec, 'mode' | 'failover'>,
  health: HealthState | undefined,
  wasActive: boolean,
): FailoverDecision {
  const whereMail =
    spec.mode === 'FailoverOnly'
      ? 'mail goes to Gmail and waits in the relay spool for the primary'
      : 'mail goes to Gmail (as always in DualDelivery) and waits in the relay spool for the primary';
  const cond = (status: 'True' | 'False', reason: string, message: string) => ({
    type: FAILOVER_ACTIVE,
    status,
    reason,
    message,
  });
  const healthy = health?.healthy;
  switch (spec.failover.manual) {
    case 'Active':
      return {
        active: true,
        trigger: 'Manual',
        condition: cond('True', 'ManualFailover', `spec.failover.manual is Active: ${whereMail}`),
      };
    case 'Inactive':
      return {
        active: false,
        condition: cond(
          'False',
          'ManualInactive',
          healthy === false
            ? 'spec.failover.manual is Inactive: the primary is unhealthy but automatic failover is forbidden; mail waits in the relay spool'
            : 'spec.failover.manual is Inactive: automatic failover is forbidden',
        ),
      };
    default:
      if (healthy === false) {
        return {
          active: true,
          trigger: 'Automatic',
          condition: cond('True', 'PrimaryUnhealthy', `the primary failed its health probes: ${whereMail}`),
        };
      }
      if (healthy === true) {
        return { active: false, condition: cond('False', 'PrimaryHealthy', 'the primary passes its health probes') };
      }
      return wasActive
        ? {
            active: true,
            trigger: 'Automatic',
            condition: cond(
              'True',
              'AwaitingProbe',
              `failover goes on until the primary passes its health probes: ${whereMail}`,
            ),
          }
        : { active: false, condition: cond('False', 'AwaitingProbe', 'the primary has not been probed yet') };
  }
}
