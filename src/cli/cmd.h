/* The lsr command's subcommands, lsr_cmd_NAME in cmd_NAME.c each: argv[0]
 * is the subcommand's name; the return value is lsr's exit status. */
#ifndef LSR_CLI_CMD_H
#define LSR_CLI_CMD_H

int lsr_cmd_train(int argc, char **argv);
int lsr_cmd_eval(int argc, char **argv);
int lsr_cmd_attack(int argc, char **argv);
int lsr_cmd_calibrate(int argc, char **argv);
int lsr_cmd_sweep(int argc, char **argv);
int lsr_cmd_project(int argc, char **argv);

#endif
