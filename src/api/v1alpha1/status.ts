// status: the conditions, the primary's health as probed, the relays and the
// last failover.
import { z } from 'zod';

export const condition = z
  .object({
    type: z.string().min(1).max(316).describe('Type of the condition, e.g. Ready or FailoverActive.'),
    status: z.enum(['True', 'False', 'Unknown']).describe('Status of the condition.'),
    observedGeneration: z.number().int().min(0).optional().describe('The generation the condition speaks of.'),
    lastTransitionTime: z.string().describe('When the status last changed (RFC 3339).').meta({ format: 'date-time' }),
    reason: z.string().min(1).max(1024).describe('A CamelCase reason, e.g. SecretNotFound.'),
    message: z.string().max(32768).describe('A human-readable message.'),
  })
  .strict();

const scheduledWindow = z
  .object({
    start: z.string().describe('Start (RFC 3339, UTC).'),
    end: z.string().describe('End (RFC 3339, UTC).'),
    description: z.string().optional().describe('The window\'s description.'),
  })
  .strict();

export const MailContinuityStatus = z
  .object({
    observedGeneration: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('The generation of the spec this status speaks of.'),
    conditions: z
      .array(condition)
      .optional()
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] })
      .describe('Ready, Reconciling, Stalled (kstatus) and PrimaryHealthy, BackupReachable, FailoverActive.'),
    primary: z
      .object({
        lastProbeTime: z.string().optional().describe('Time of the last probe (RFC 3339).'),
        latencyMilliseconds: z.number().int().min(0).optional().describe('Duration of the last probe.'),
        consecutiveFailures: z.number().int().min(0).optional().describe('Failed probes in a row.'),
        consecutiveSuccesses: z.number().int().min(0).optional().describe('Good probes in a row.'),
      })
      .strict()
      .optional()
      .describe("Health of the primary as the operator's probes see it."),
    relay: z
      .object({
        replicas: z.number().int().min(0).optional().describe('Relay pods that exist.'),
        readyReplicas: z.number().int().min(0).optional().describe('Relay pods that are ready.'),
        queuedPrimary: z.number().int().min(0).optional().describe('Messages waiting for the primary.'),
        queuedBackup: z.number().int().min(0).optional().describe('Messages waiting for Gmail.'),
      })
      .strict()
      .optional()
      .describe('State of the relay.'),
    lastFailover: z
      .object({
        start: z.string().optional().describe('When the failover started (RFC 3339).'),
        end: z.string().optional().describe('When it ended; empty while it is active.'),
        trigger: z
          .enum(['Automatic', 'Manual', 'Scheduled'])
          .optional()
          .describe('What started it: the probes (Automatic), spec.failover.manual (Manual), a maintenance window (Scheduled).'),
        messagesToBackup: z.number().int().min(0).optional().describe('Messages sent to Gmail during the failover.'),
        messagesReplayed: z.number().int().min(0).optional().describe('Messages replayed to the primary after it.'),
        replayRemaining: z.number().int().min(0).optional().describe('Messages still to replay.'),
      })
      .strict()
      .optional()
      .describe('The last continuity event.'),
    schedule: z
      .object({
        activeWindow: scheduledWindow.optional().describe('The maintenance window in progress.'),
        nextWindow: scheduledWindow.optional().describe('The next maintenance window to start.'),
      })
      .strict()
      .optional()
      .describe('The maintenance windows of spec.failover.schedule: the one in progress and the next.'),
  })
  .strict()
  .describe('The observed state of mail continuity.');
