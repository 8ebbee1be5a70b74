// Whether a MailContinuity is in failover: a pure function of
// spec.failover (manual, schedule), the primary's health (after hysteresis),
// whether failover was active before, and whether any relay is deployed.
//
//   no relay deployed -> never active: there is nothing to carry mail to Gmail
//                        (the resource is Stalled before its first relay), so
//                        no FailoverStarted and no FailoverActive=True;
//   manual Active    -> active (trigger Manual), whatever the probes say;
//   manual Inactive  -> never active: the admin has forbidden automatic failover;
//   manual Auto      -> active during a maintenance window of spec.failover.schedule
//                       (trigger Scheduled; the relays hold mail for the primary
//                       until it ends), else while the primary is Unhealthy
//                       (trigger Automatic), inactive once it is Healthy again
//                       (successThreshold good probes). While the health is Unknown
//                       (operator restarted, new target, failures below the
//                       threshold) the previous verdict stands: an operator that
//                       restarts during an outage must not end the failover.
import type { Condition, MailContinuitySpec } from '../../api/v1alpha1/mailcontinuity.js';
import type { HealthState } from '../health/hysteresis.js';
import { describeWindow, scheduleAt } from './schedule.js';

export const FAILOVER_ACTIVE = 'FailoverActive';

export type Trigger = 'Automatic' | 'Manual' | 'Scheduled';

export interface FailoverDecision {
  active: boolean;
  trigger?: Trigger;
  /** A maintenance window: the relays deliver nothing to the primary until it ends. */
  holdPrimary?: boolean;
  condition: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;
}

export interface DecideContext {
  /** For the maintenance windows (default: no window is in progress). */
  now?: Date;
  /** A relay StatefulSet of this resource exists (default true). */
  relaysDeployed?: boolean;
}

export function decideFailover(
  spec: Pick<MailContinuitySpec, 'mode' | 'failover'>,
  health: HealthState | undefined,
  wasActive: boolean,
  ctx: DecideContext = {},
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
  if (ctx.relaysDeployed === false) {
    return {
      active: false,
      condition: cond(
        'False',
        'NoRelayDeployed',
        'no relay is deployed to carry mail to Gmail (see the Stalled condition): nothing fails over until one runs',
      ),
    };
  }
  const window = ctx.now && spec.failover.manual === 'Auto' ? scheduleAt(spec.failover.schedule, ctx.now).active : undefined;
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
      if (window) {
        return {
          active: true,
          trigger: 'Scheduled',
          holdPrimary: true,
          condition: cond(
            'True',
            'MaintenanceWindow',
            `maintenance window ${describeWindow(window)} (spec.failover.schedule): mail goes to Gmail and waits in the relay spool, delivered to the primary when the window ends`,
          ),
        };
      }
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
        : health?.lastProbeTime === undefined
          ? { active: false, condition: cond('False', 'AwaitingProbe', 'the primary has not been probed yet') }
          : {
              active: false,
              condition: cond(
                'False',
                'PrimaryHealthUnknown',
                `the primary failed its last health probe, fewer than failureThreshold (${health.failureThreshold}) in a row: no failover yet`,
              ),
            };
  }
}
